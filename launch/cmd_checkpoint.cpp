// cmd_checkpoint.cpp — `cmoe checkpoint inspect|verify|reshard`: look inside a checkpoint
// directory without a run, check it end to end before a long job relies on it, and rewrite it
// for another (pp, dp, ep) layout ahead of time.
//
//   cmoe checkpoint inspect DIR [--json] [--tensors]
//       manifest facts (format version, step, tokens, seed, counters, the writing layout),
//       tensor count, entries, files and bytes, the model section of the saved config; every
//       entry's name/dtype/shape/rows/bytes/file with --tensors (always in --json). Reads only
//       manifest.pb, checked as every reader checks it (its CRC-32C, version, step): an empty,
//       unreadable or damaged manifest is an error naming the file, never a default model.
//   cmoe checkpoint verify DIR
//       opens it as a run would (manifest, every file present and long enough, entries tiling
//       each tensor) and reads every entry checking its CRC-32C, checks that manifest.txt agrees
//       with manifest.pb, and parses the saved config:
//       "OK: N tensors, B bytes verified", or exit 1 with the error naming the tensor, the file
//       and the offset.
//   cmoe checkpoint reshard DIR --out ROOT [--set parallel.pp=P] [--set parallel.dp=D]
//                                          [--set parallel.ep=E]
//       writes ROOT/step_N (and ROOT/latest) with the shard files that layout's ranks would
//       write (reading and CRC-checking every source entry); the saved config's parallel
//       section is updated. Resuming needs no reshard (any layout loads any checkpoint); this
//       gives each rank of the new layout one file to read.
// DIR is a step directory (step_NNNNNNNN) or a checkpoints root whose `latest` names one.
// Layout: docs/checkpoint-format.md.
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <set>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "checkpoint/checkpoint.h"
#include "moe/train/config.h"
#include "core/json.h"
#include "launch/commands.h"
#include "launch/command_line.h"
#include "moe/train/train_state.h"

namespace cmoe {

namespace {

constexpr const char* kCheckpointUsage =
    "usage: cmoe checkpoint <subcommand> DIR [flags]\n"
    "\n"
    "DIR: a checkpoint step directory, or a checkpoints root with a 'latest' file.\n"
    "subcommands:\n"
    "  inspect DIR [--json] [--tensors]   manifest facts, config summary, tensor index\n"
    "  verify DIR                         check every file size and CRC-32C; exit 1 on damage\n"
    "  reshard DIR --out ROOT [--set parallel.{pp,dp,ep}=N]...\n"
    "                                     rewrite as that layout's shard files under ROOT/step_N\n";

int fail(const char* sub, const absl::Status& s) {
  std::fprintf(stderr, "cmoe checkpoint %s: %s\n", sub, std::string(s.message()).c_str());
  return 1;
}

// The step directory DIR names: itself, or <DIR>/latest's target for a checkpoints root.
absl::StatusOr<std::string> resolve_dir(const std::string& arg) {
  namespace fs = std::filesystem;
  if (!fs::is_directory(arg)) return absl::NotFoundError(absl::StrCat(arg, ": no such directory"));
  std::string dir = arg;
  if (fs::exists(arg + "/latest")) {
    CMOE_ASSIGN_OR_RETURN(dir, checkpoint_latest(arg));
  }
  if (!fs::exists(dir + "/manifest.pb")) {
    return absl::DataLossError(absl::StrCat(dir, "/manifest.pb: missing (not a checkpoint step directory, or an "
                                            "incomplete one)"));
  }
  return dir;
}

std::string shape_str(const checkpoint::TensorEntry& e, const char* open, const char* close) {
  return absl::StrCat(open, absl::StrJoin(e.shape(), ", "), close);
}

// The entry's rows of dim 0: "[b, e]" style with the given punctuation (whole tensors too).
std::string rows_of(const checkpoint::TensorEntry& e, const char* open, const char* sep, const char* close) {
  const int64_t b = e.slice_begin_size() ? e.slice_begin(0) : 0;
  const int64_t end = e.slice_end_size() ? e.slice_end(0) : (e.shape_size() ? e.shape(0) : 1);
  return absl::StrCat(open, b, sep, end, close);
}

bool is_optimizer(const std::string& name) { return name.rfind("optim.", 0) == 0; }

int cmd_checkpoint_inspect(int argc, char** argv) {
  const std::vector<FlagSpec> specs = {
      {"json", false, false, "print JSON (includes every tensor)"},
      {"tensors", false, false, "list every tensor: name, dtype, shape, bytes"},
  };
  auto flags = parse_command_line({"checkpoint inspect", specs, {}, 1, 1, "DIR"}, argc, argv, 3);
  if (!flags) return kExitUsage;
  auto dir = resolve_dir(flags->positional[0]);
  if (!dir.ok()) return fail("inspect", dir.status());
  auto m = checkpoint_read_manifest(*dir);
  if (!m.ok()) return fail("inspect", m.status());
  auto cfg = config_parse(m->config(), *dir + "/manifest.pb (config)");
  if (!cfg.ok()) return fail("inspect", cfg.status());

  uint64_t total_bytes = 0;
  int64_t weight_params = 0, optim_values = 0;
  std::set<std::string> names, files;
  for (const auto& e : m->tensors()) {
    total_bytes += e.nbytes();
    files.insert(e.file());
    if (!names.insert(e.name()).second) continue;  // a further slice of a tensor already counted
    int64_t n = 1;
    for (int64_t d : e.shape()) n *= d;
    (is_optimizer(e.name()) ? optim_values : weight_params) += n;
  }
  const int lpp = m->has_layout() ? m->layout().pp() : 1, ldp = m->has_layout() ? m->layout().dp() : 1,
            lep = m->has_layout() ? m->layout().ep() : 1;
  const auto& mc = cfg->model();
  const std::string moe_kind = config::FfnKind_Name(mc.moe().kind());
  const bool json_out = flags->has("json");
  if (json_out) {
    using json::Value;
    Value j = Value::object();
    j.set("dir", Value::string(*dir));
    j.set("format_version", Value::integer(m->format_version()));
    j.set("step", Value::integer(m->step()));
    j.set("tokens_seen", Value::integer(m->tokens_seen()));
    j.set("seed", Value::integer(static_cast<int64_t>(m->seed())));
    j.set("manifest_crc32c",
          m->has_manifest_crc32c() ? Value::string(absl::StrFormat("%08x", m->manifest_crc32c())) : Value());
    Value counters = Value::object();
    for (const auto& c : m->counters()) counters.set(c.name(), Value::integer(c.value()));
    j.set("counters", std::move(counters));
    Value layout = Value::object();
    layout.set("pp", Value::integer(lpp));
    layout.set("dp", Value::integer(ldp));
    layout.set("ep", Value::integer(lep));
    j.set("layout", std::move(layout));
    j.set("num_tensors", Value::integer(static_cast<int64_t>(names.size())));
    j.set("num_entries", Value::integer(m->tensors_size()));
    Value file_list = Value::array();
    for (const std::string& f : files) file_list.push_back(Value::string(f));
    j.set("files", std::move(file_list));
    j.set("total_bytes", Value::integer(static_cast<int64_t>(total_bytes)));
    j.set("weight_params", Value::integer(weight_params));
    j.set("optimizer_values", Value::integer(optim_values));
    Value model = Value::object();
    model.set("vocab_size", Value::integer(mc.vocab_size()));
    model.set("d_model", Value::integer(mc.d_model()));
    model.set("n_layers", Value::integer(mc.n_layers()));
    model.set("n_heads", Value::integer(mc.n_heads()));
    model.set("ffn_hidden", Value::integer(mc.ffn_hidden()));
    model.set("seq_len", Value::integer(mc.seq_len()));
    Value moe = Value::object();
    moe.set("kind", Value::string(moe_kind));
    moe.set("interval", Value::integer(mc.moe().interval()));
    moe.set("num_experts", Value::integer(mc.moe().num_experts()));
    moe.set("top_k", Value::integer(mc.moe().top_k()));
    moe.set("shared_expert", Value::boolean(mc.moe().shared_expert()));
    model.set("moe", std::move(moe));
    j.set("model", std::move(model));
    // The header on one line, then one tensor entry per line (a large model has thousands).
    std::string out = json::serialize_line(j);
    out.pop_back();  // the closing brace
    out += ", \"tensors\": [";
    for (int i = 0; i < m->tensors_size(); ++i) {
      const auto& e = m->tensors(i);
      Value t = Value::object();
      t.set("name", Value::string(e.name()));
      t.set("dtype", Value::string(e.dtype()));
      Value shape = Value::array(), rows = Value::array();
      for (int64_t d : e.shape()) shape.push_back(Value::integer(d));
      rows.push_back(Value::integer(e.slice_begin_size() ? e.slice_begin(0) : 0));
      rows.push_back(Value::integer(e.slice_end_size() ? e.slice_end(0) : (e.shape_size() ? e.shape(0) : 1)));
      t.set("shape", std::move(shape));
      t.set("rows", std::move(rows));
      t.set("nbytes", Value::integer(static_cast<int64_t>(e.nbytes())));
      t.set("file", Value::string(e.file()));
      t.set("offset", Value::integer(static_cast<int64_t>(e.offset())));
      absl::StrAppend(&out, i ? ",\n  " : "\n  ", json::serialize_line(t));
    }
    out += "]}\n";
    std::fputs(out.c_str(), stdout);
    return 0;
  }
  std::printf("checkpoint %s\n", dir->c_str());
  std::printf("format_version %u | step %lld | tokens_seen %lld | seed %llu\n", m->format_version(),
              static_cast<long long>(m->step()), static_cast<long long>(m->tokens_seen()),
              static_cast<unsigned long long>(m->seed()));
  if (m->has_manifest_crc32c()) {
    std::printf("manifest_crc32c %08x (checked)\n", m->manifest_crc32c());
  } else {
    std::printf("manifest_crc32c none (format %u manifests carry no checksum)\n", m->format_version());
  }
  for (const auto& c : m->counters()) {
    std::printf("counter %s = %lld\n", c.name().c_str(), static_cast<long long>(c.value()));
  }
  std::printf("written by pp %d x dp %d x ep %d: %zu files (%s)\n", lpp, ldp, lep, files.size(),
              absl::StrJoin(files, ", ").c_str());
  std::printf("tensors: %zu in %d entries, %llu bytes (%.2f MB) | weights %.3fM params | optimizer moments %.3fM values\n",
              names.size(), m->tensors_size(), static_cast<unsigned long long>(total_bytes), total_bytes / 1e6,
              weight_params / 1e6, optim_values / 1e6);
  std::printf("model: vocab %d, d_model %d, %d layers, %d heads, ffn_hidden %d, seq_len %d | moe %s: interval %d, "
              "%d experts, top-%d, shared expert %s\n",
              mc.vocab_size(), mc.d_model(), mc.n_layers(), mc.n_heads(), mc.ffn_hidden(), mc.seq_len(),
              moe_kind.c_str(), mc.moe().interval(), mc.moe().num_experts(), mc.moe().top_k(),
              mc.moe().shared_expert() ? "yes" : "no");
  if (flags->has("tensors")) {
    for (const auto& e : m->tensors()) {
      std::printf("  %-48s %-4s %-16s rows %-9s %12llu bytes  %s@%llu\n", e.name().c_str(), e.dtype().c_str(),
                  shape_str(e, "(", ")").c_str(), rows_of(e, "", ":", "").c_str(),
                  static_cast<unsigned long long>(e.nbytes()), e.file().c_str(), static_cast<unsigned long long>(e.offset()));
    }
  }
  return 0;
}

int cmd_checkpoint_verify(int argc, char** argv) {
  auto flags = parse_command_line({"checkpoint verify", {}, {}, 1, 1, "DIR"}, argc, argv, 3);
  if (!flags) return kExitUsage;
  auto dir = resolve_dir(flags->positional[0]);
  if (!dir.ok()) return fail("verify", dir.status());
  auto ck = CheckpointReader::open(*dir);
  if (!ck.ok()) return fail("verify", ck.status());
  auto bytes = (*ck)->verify_all();
  if (!bytes.ok()) return fail("verify", bytes.status());
  if (absl::Status st = checkpoint_check_manifest_text(*dir, (*ck)->manifest()); !st.ok()) return fail("verify", st);
  auto cfg = config_parse((*ck)->manifest().config(), *dir + "/manifest.pb (config)");
  if (!cfg.ok()) return fail("verify", cfg.status());
  if (absl::Status st = config_validate(*cfg); !st.ok()) return fail("verify", st);
  // What a resume checks: exactly the tensors the saved config's model needs.
  if (absl::Status st = check_state_tensors(**ck, cfg->model()); !st.ok()) return fail("verify", st);
  std::printf("OK: %zu tensors, %llu bytes verified (%s, step %lld, %d entries)\n", (*ck)->names().size(),
              static_cast<unsigned long long>(*bytes), dir->c_str(), static_cast<long long>((*ck)->manifest().step()),
              (*ck)->manifest().tensors_size());
  return 0;
}

int cmd_checkpoint_reshard(int argc, char** argv) {
  const std::vector<FlagSpec> specs = {
      {"out", true, false, "checkpoints root to write (ROOT/step_N and ROOT/latest)"},
      {"set", true, true, "parallel.pp=N, parallel.dp=N or parallel.ep=N: the target layout"},
  };
  auto flags = parse_command_line({"checkpoint reshard", specs, {"out"}, 1, 1, "DIR"}, argc, argv, 3);
  if (!flags) return kExitUsage;
  auto dir = resolve_dir(flags->positional[0]);
  if (!dir.ok()) return fail("reshard", dir.status());
  auto ck = CheckpointReader::open(*dir);
  if (!ck.ok()) return fail("reshard", ck.status());
  auto cfg = config_parse((*ck)->manifest().config(), *dir + "/manifest.pb (config)");
  if (!cfg.ok()) return fail("reshard", cfg.status());
  for (const std::string& a : flags->all("set")) {
    if (a.rfind("parallel.", 0) != 0) {
      std::fprintf(stderr, "cmoe checkpoint reshard: --set %s: only parallel.pp, parallel.dp and parallel.ep can change\n",
                   a.c_str());
      return 2;
    }
    if (absl::Status st = config_set(*cfg, a); !st.ok()) return fail("reshard", st);
  }
  if (absl::Status st = config_validate(*cfg); !st.ok()) return fail("reshard", st);
  const std::string out = flags->get("out");
  if (std::filesystem::exists(out + "/" + checkpoint_step_name((*ck)->manifest().step()))) {
    return fail("reshard", absl::AlreadyExistsError(absl::StrCat(out, "/", checkpoint_step_name((*ck)->manifest().step()),
                                                                 " exists; not overwriting it")));
  }
  auto written = reshard_checkpoint(**ck, *cfg, out);
  if (!written.ok()) {
    checkpoint_abort(out, (*ck)->manifest().step());  // a failed reshard leaves no staging directory
    return fail("reshard", written.status());
  }
  const auto& p = cfg->parallel();
  std::printf("resharded %s (step %lld) for pp %d x dp %d x ep %d: %s\n", dir->c_str(),
              static_cast<long long>((*ck)->manifest().step()), p.pp(), p.dp(), p.ep(), written->c_str());
  return 0;
}

}  // namespace

int cmd_checkpoint(int argc, char** argv) {
  if (argc < 3 || !std::strcmp(argv[2], "--help") || !std::strcmp(argv[2], "help")) {
    std::fputs(kCheckpointUsage, argc < 3 ? stderr : stdout);
    return argc < 3 ? 2 : 0;
  }
  const std::string sub = argv[2];
  if (sub == "inspect") return cmd_checkpoint_inspect(argc, argv);
  if (sub == "verify") return cmd_checkpoint_verify(argc, argv);
  if (sub == "reshard") return cmd_checkpoint_reshard(argc, argv);
  std::fprintf(stderr, "cmoe checkpoint: unknown subcommand '%s'\n%s", sub.c_str(), kCheckpointUsage);
  return 2;
}

}  // namespace cmoe
