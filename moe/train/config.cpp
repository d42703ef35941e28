// config.cpp — text-format parsing, --set overrides by reflection, and range validation.
#include "moe/train/config.h"

#include "moe/train/profile.h"
#include "moe/variant.h"

#include <cmath>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "core/check.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/io/tokenizer.h"
#include "google/protobuf/text_format.h"

namespace cmoe {

namespace pb = google::protobuf;

namespace {

class ErrorCollector final : public pb::io::ErrorCollector {
 public:
  explicit ErrorCollector(std::string source) : source_(std::move(source)) {}
  void AddError(int line, pb::io::ColumnNumber column, const std::string& message) override {
    errors_.push_back(absl::StrCat(source_, ":", line + 1, ":", column + 1, ": ", message));
  }
  void AddWarning(int line, pb::io::ColumnNumber column, const std::string& message) override {
    errors_.push_back(absl::StrCat(source_, ":", line + 1, ":", column + 1, ": warning: ", message));
  }
  std::string joined() const { return absl::StrJoin(errors_, "\n"); }

 private:
  std::string source_;
  std::vector<std::string> errors_;
};

std::string field_names(const pb::Descriptor* d) {
  std::vector<std::string> names;
  for (int i = 0; i < d->field_count(); ++i) names.push_back(d->field(i)->name());
  return absl::StrJoin(names, ", ");
}

absl::Status set_scalar(pb::Message& msg, const pb::FieldDescriptor* f, const std::string& value,
                        const std::string& path) {
  const pb::Reflection* r = msg.GetReflection();
  auto bad = [&](const char* expected) {
    return absl::InvalidArgumentError(
        absl::StrCat("--set ", path, "=", value, ": expected ", expected));
  };
  switch (f->cpp_type()) {
    case pb::FieldDescriptor::CPPTYPE_INT32: {
      int32_t v;
      if (!absl::SimpleAtoi(value, &v)) return bad("a 32-bit integer");
      r->SetInt32(&msg, f, v);
      break;
    }
    case pb::FieldDescriptor::CPPTYPE_INT64: {
      int64_t v;
      if (!absl::SimpleAtoi(value, &v)) return bad("a 64-bit integer");
      r->SetInt64(&msg, f, v);
      break;
    }
    case pb::FieldDescriptor::CPPTYPE_UINT32: {
      uint32_t v;
      if (!absl::SimpleAtoi(value, &v)) return bad("an unsigned 32-bit integer");
      r->SetUInt32(&msg, f, v);
      break;
    }
    case pb::FieldDescriptor::CPPTYPE_UINT64: {
      uint64_t v;
      if (!absl::SimpleAtoi(value, &v)) return bad("an unsigned 64-bit integer");
      r->SetUInt64(&msg, f, v);
      break;
    }
    case pb::FieldDescriptor::CPPTYPE_FLOAT: {
      float v;
      if (!absl::SimpleAtof(value, &v)) return bad("a number");
      r->SetFloat(&msg, f, v);
      break;
    }
    case pb::FieldDescriptor::CPPTYPE_DOUBLE: {
      double v;
      if (!absl::SimpleAtod(value, &v)) return bad("a number");
      r->SetDouble(&msg, f, v);
      break;
    }
    case pb::FieldDescriptor::CPPTYPE_BOOL: {
      bool v;
      if (!absl::SimpleAtob(value, &v)) return bad("true or false");
      r->SetBool(&msg, f, v);
      break;
    }
    case pb::FieldDescriptor::CPPTYPE_STRING:
      r->SetString(&msg, f, value);
      break;
    case pb::FieldDescriptor::CPPTYPE_ENUM: {
      const pb::EnumDescriptor* e = f->enum_type();
      const pb::EnumValueDescriptor* ev = e->FindValueByName(absl::AsciiStrToUpper(value));
      if (ev == nullptr) {
        std::vector<std::string> names;
        for (int i = 0; i < e->value_count(); ++i) names.push_back(absl::AsciiStrToLower(e->value(i)->name()));
        return bad(absl::StrCat("one of ", absl::StrJoin(names, ", ")).c_str());
      }
      r->SetEnum(&msg, f, ev);
      break;
    }
    case pb::FieldDescriptor::CPPTYPE_MESSAGE:
      return absl::InvalidArgumentError(
          absl::StrCat("--set ", path, ": is a section, not a field; set one of its fields: ",
                       field_names(f->message_type())));
  }
  return absl::OkStatus();
}

// Range rules: field path, closed [lo, hi].
struct Range {
  const char* path;
  double lo, hi;
};
constexpr double kInf = 1e300;
constexpr Range kRanges[] = {
    {"model.vocab_size", 2, 1 << 30},
    {"model.d_model", 1, 1 << 20},
    {"model.n_layers", 1, 4096},
    {"model.n_heads", 1, 4096},
    {"model.ffn_hidden", 1, 1 << 22},
    {"model.seq_len", 1, 1 << 22},
    {"model.rope_theta", 1, kInf},
    {"model.norm_eps", 1e-12, 1},
    {"model.init_std", 0, 10},
    {"model.moe.interval", 1, 4096},
    {"model.moe.num_experts", 1, 1 << 16},
    {"model.moe.top_k", 1, 1 << 16},
    {"model.moe.expert_hidden", 0, 1 << 22},
    {"model.moe.top_p", 1e-6, 1},
    {"model.moe.aux_loss_coef", 0, kInf},
    {"model.moe.z_loss_coef", 0, kInf},
    {"model.moe.aux_free_bias_rate", 0, kInf},
    {"model.moe.capacity_factor", 0, kInf},
    {"train.steps", 1, 1e15},
    {"train.micro_batch_size", 1, 1 << 20},
    {"train.grad_accum", 1, 1 << 20},
    {"train.lr", 1e-12, 10},
    {"train.min_lr", 0, 10},
    {"train.warmup_steps", 0, 1e15},
    {"train.weight_decay", 0, 10},
    {"train.beta1", 0, 0.999999},
    {"train.beta2", 0, 0.999999999},
    {"train.adam_eps", 1e-30, 1},
    {"train.grad_clip", 0, kInf},
    {"train.log_interval", 1, 1e15},
    {"train.routing_stats_interval", 0, 1e15},
    {"train.eval_interval", 1, 1e15},
    {"train.eval_batches", 1, 1e15},
    {"train.exit_at_step", 0, 1e15},
    {"checkpoint.interval", 0, 1e15},
    {"checkpoint.keep_last", 1, 1 << 20},
    {"parallel.pp", 1, 1 << 20},
    {"parallel.dp", 1, 1 << 20},
    {"parallel.ep", 1, 1 << 20},
};

absl::StatusOr<double> numeric_at(const pb::Message& root, const std::string& path) {
  const pb::Message* msg = &root;
  std::vector<std::string> parts = absl::StrSplit(path, '.');
  for (size_t i = 0; i < parts.size(); ++i) {
    const pb::FieldDescriptor* f = msg->GetDescriptor()->FindFieldByName(parts[i]);
    if (f == nullptr) return absl::InternalError(absl::StrCat("range table names unknown field ", path));
    const pb::Reflection* r = msg->GetReflection();
    if (i + 1 < parts.size()) {
      msg = &r->GetMessage(*msg, f);
      continue;
    }
    switch (f->cpp_type()) {
      case pb::FieldDescriptor::CPPTYPE_INT32: return r->GetInt32(*msg, f);
      case pb::FieldDescriptor::CPPTYPE_INT64: return static_cast<double>(r->GetInt64(*msg, f));
      case pb::FieldDescriptor::CPPTYPE_UINT32: return r->GetUInt32(*msg, f);
      case pb::FieldDescriptor::CPPTYPE_UINT64: return static_cast<double>(r->GetUInt64(*msg, f));
      case pb::FieldDescriptor::CPPTYPE_FLOAT: return r->GetFloat(*msg, f);
      case pb::FieldDescriptor::CPPTYPE_DOUBLE: return r->GetDouble(*msg, f);
      default: return absl::InternalError(absl::StrCat("range table names non-numeric field ", path));
    }
  }
  return absl::InternalError("empty path");
}

// A number as a person wrote it: integers exactly (not 2.14748e+09), others to 9 digits.
std::string fmt_number(double v) {
  if (std::isfinite(v) && v == std::floor(v) && std::fabs(v) < 9.2e18) return absl::StrCat(static_cast<int64_t>(v));
  return absl::StrFormat("%.9g", v);
}

// Whether `message` names the field `path` (as a whole dotted path, not part of a longer one).
bool names_field(const std::string& message, const std::string& path) {
  auto part = [](char c) { return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.'; };
  for (size_t at = message.find(path); at != std::string::npos; at = message.find(path, at + 1)) {
    const size_t end = at + path.size();
    if ((at == 0 || !part(message[at - 1])) && (end == message.size() || !part(message[end]))) return true;
  }
  return false;
}

absl::Status rule(bool ok, const std::string& message) {
  return ok ? absl::OkStatus() : absl::InvalidArgumentError(absl::StrCat("config: ", message));
}

}  // namespace

absl::Status textproto_parse(const std::string& text, const std::string& source, pb::Message* msg) {
  pb::TextFormat::Parser parser;
  ErrorCollector errors(source);
  parser.RecordErrorsTo(&errors);
  if (!parser.ParseFromString(text, msg)) return absl::InvalidArgumentError(errors.joined());
  return absl::OkStatus();
}

absl::StatusOr<RunConfig> config_parse(const std::string& text, const std::string& source) {
  RunConfig cfg;
  if (absl::Status s = textproto_parse(text, source, &cfg); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("cannot parse config: ", s.message()));
  }
  return cfg;
}

absl::Status config_set(RunConfig& cfg, const std::string& assignment) {
  size_t eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--set ", assignment, ": expected path.to.field=value"));
  }
  std::string path = assignment.substr(0, eq), value = assignment.substr(eq + 1);
  std::vector<std::string> parts = absl::StrSplit(path, '.');
  pb::Message* msg = &cfg;
  std::string walked;
  for (size_t i = 0; i < parts.size(); ++i) {
    const pb::FieldDescriptor* f = msg->GetDescriptor()->FindFieldByName(parts[i]);
    std::string here = walked.empty() ? parts[i] : absl::StrCat(walked, ".", parts[i]);
    if (f == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--set ", path, ": unknown field '", here, "'; fields of ",
          walked.empty() ? "the config" : walked, ": ", field_names(msg->GetDescriptor())));
    }
    if (f->is_repeated()) {
      return absl::InvalidArgumentError(absl::StrCat("--set ", path, ": repeated fields cannot be set"));
    }
    if (i + 1 < parts.size()) {
      if (f->cpp_type() != pb::FieldDescriptor::CPPTYPE_MESSAGE) {
        return absl::InvalidArgumentError(absl::StrCat("--set ", path, ": '", here, "' is a value, not a section"));
      }
      msg = msg->GetReflection()->MutableMessage(msg, f);
      walked = here;
      continue;
    }
    return set_scalar(*msg, f, value, path);
  }
  return absl::InvalidArgumentError(absl::StrCat("--set ", assignment, ": empty field path"));
}

absl::Status config_validate(const RunConfig& cfg) {
  for (const Range& r : kRanges) {
    CMOE_ASSIGN_OR_RETURN(double v, numeric_at(cfg, r.path));
    if (!(v >= r.lo && v <= r.hi) || std::isnan(v)) {
      return absl::InvalidArgumentError(absl::StrCat("config: ", r.path, " = ", fmt_number(v),
                                                     " is out of range; allowed [", fmt_number(r.lo), ", ",
                                                     r.hi >= kInf ? std::string("inf") : fmt_number(r.hi), "]"));
    }
  }
  const auto& m = cfg.model();
  const auto& t = cfg.train();
  const auto& p = cfg.parallel();
  CMOE_RETURN_IF_ERROR(validate_model_config(m));
  CMOE_RETURN_IF_ERROR(precision_dtype(t.precision()).status());
  CMOE_RETURN_IF_ERROR(rule(t.device() == "cpu" || t.device() == "cuda",
                            absl::StrCat("train.device = \"", t.device(), "\"; allowed \"cpu\" or \"cuda\"")));
  CMOE_RETURN_IF_ERROR(parse_profile_steps(t.profile_steps()).status());
  CMOE_RETURN_IF_ERROR(rule(t.min_lr() <= t.lr(), absl::StrCat("train.min_lr = ", t.min_lr(),
                                                               " must not exceed train.lr = ", t.lr())));
  CMOE_RETURN_IF_ERROR(rule(t.exit_at_step() <= t.steps(),
                            absl::StrCat("train.exit_at_step = ", t.exit_at_step(),
                                         " is beyond train.steps = ", t.steps())));
  return config_validate_layout(cfg, {p.pp(), p.dp(), p.ep()});
}

absl::StatusOr<DType> precision_dtype(const std::string& precision) {
  if (precision == "f32") return DType::kF32;
  if (precision == "bf16") return DType::kBF16;
  return absl::InvalidArgumentError(
      absl::StrCat("config: train.precision = \"", precision, "\"; allowed \"f32\" or \"bf16\""));
}

DType compute_dtype(const config::TrainConfig& t) {
  auto d = precision_dtype(t.precision());
  CMOE_CHECK(d.ok(), d.status().message());
  return *d;
}

absl::Status config_validate_layout(const RunConfig& cfg, const parallel::ParallelLayout& layout) {
  const auto& m = cfg.model();
  const MoeVariant v = resolve_variant(m);
  if (layout.ep > 1) {
    CMOE_RETURN_IF_ERROR(rule(v.routed, absl::StrCat("parallel.ep = ", layout.ep, " needs an MoE model (model.moe.kind is ",
                                                     v.name, ")")));
    CMOE_RETURN_IF_ERROR(rule(v.num_experts % layout.ep == 0, absl::StrCat("parallel.ep = ", layout.ep, " must divide the ",
                                                                           v.num_experts, " experts per router")));
    CMOE_RETURN_IF_ERROR(rule(m.moe().capacity_factor() == 0,
                              absl::StrCat("model.moe.capacity_factor = ", m.moe().capacity_factor(),
                                           " with parallel.ep > 1: expert parallelism is dropless (set capacity_factor to 0)")));
  }
  CMOE_RETURN_IF_ERROR(rule(layout.dp % layout.ep == 0, absl::StrCat("parallel.ep = ", layout.ep,
                                                                     " must divide parallel.dp = ", layout.dp)));
  return rule(layout.pp <= m.n_layers(), absl::StrCat("parallel.pp = ", layout.pp, " exceeds model.n_layers = ", m.n_layers()));
}

absl::StatusOr<RunConfig> config_load(const std::string& path, const std::vector<std::string>& overrides) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open config file ", path));
  std::stringstream ss;
  ss << in.rdbuf();
  CMOE_ASSIGN_OR_RETURN(RunConfig cfg, config_parse(ss.str(), path));
  for (const std::string& o : overrides) CMOE_RETURN_IF_ERROR(config_set(cfg, o));
  absl::Status st = config_validate(cfg);
  if (st.ok()) return cfg;
  // Say where the offending values came from: the --set overrides the message names, else
  // the file.
  std::vector<std::string> blamed;
  for (const std::string& o : overrides)
    if (names_field(std::string(st.message()), o.substr(0, o.find('=')))) blamed.push_back("--set " + o);
  if (blamed.empty()) return absl::InvalidArgumentError(absl::StrCat(path, ": ", st.message()));
  return absl::InvalidArgumentError(absl::StrCat(absl::StrJoin(blamed, ", "), " (on ", path, "): ", st.message()));
}

void config_materialise(pb::Message& msg) {
  const pb::Descriptor* d = msg.GetDescriptor();
  const pb::Reflection* r = msg.GetReflection();
  for (int i = 0; i < d->field_count(); ++i) {
    const pb::FieldDescriptor* f = d->field(i);
    if (f->is_repeated()) continue;
    switch (f->cpp_type()) {
      case pb::FieldDescriptor::CPPTYPE_MESSAGE: config_materialise(*r->MutableMessage(&msg, f)); break;
      case pb::FieldDescriptor::CPPTYPE_INT32: r->SetInt32(&msg, f, r->GetInt32(msg, f)); break;
      case pb::FieldDescriptor::CPPTYPE_INT64: r->SetInt64(&msg, f, r->GetInt64(msg, f)); break;
      case pb::FieldDescriptor::CPPTYPE_UINT32: r->SetUInt32(&msg, f, r->GetUInt32(msg, f)); break;
      case pb::FieldDescriptor::CPPTYPE_UINT64: r->SetUInt64(&msg, f, r->GetUInt64(msg, f)); break;
      case pb::FieldDescriptor::CPPTYPE_FLOAT: r->SetFloat(&msg, f, r->GetFloat(msg, f)); break;
      case pb::FieldDescriptor::CPPTYPE_DOUBLE: r->SetDouble(&msg, f, r->GetDouble(msg, f)); break;
      case pb::FieldDescriptor::CPPTYPE_BOOL: r->SetBool(&msg, f, r->GetBool(msg, f)); break;
      case pb::FieldDescriptor::CPPTYPE_STRING: r->SetString(&msg, f, r->GetString(msg, f)); break;
      case pb::FieldDescriptor::CPPTYPE_ENUM: r->SetEnum(&msg, f, r->GetEnum(msg, f)); break;
    }
  }
}

std::string config_to_text(const RunConfig& cfg) {
  RunConfig full = cfg;
  config_materialise(full);
  std::string out;
  pb::TextFormat::Printer printer;
  printer.PrintToString(full, &out);
  return out;
}

}  // namespace cmoe
