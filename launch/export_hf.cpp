// export_hf.cpp — shard planning, the safetensors index and the JSON files beside an export
// (see export_hf.h).
#include "launch/export_hf.h"

#include <glob.h>

#include <cmath>
#include <cstdio>
#include <filesystem>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "checkpoint/safetensors.h"
#include "core/json.h"

namespace cmoe {

absl::StatusOr<int64_t> parse_shard_size(const std::string& text) {
  const std::string s(absl::StripAsciiWhitespace(text));
  size_t split = 0;
  while (split < s.size() && (absl::ascii_isdigit(static_cast<unsigned char>(s[split])) || s[split] == '.')) ++split;
  const std::string number = s.substr(0, split);
  const std::string unit(absl::StripAsciiWhitespace(s.substr(split)));
  auto bad = [&](const std::string& why) {
    return absl::InvalidArgumentError(absl::StrCat("--shard-size '", text, "': ", why,
                                                   " (write bytes, or a number with KB, MB, GB, TB, KiB, MiB, "
                                                   "GiB or TiB, e.g. 2GB)"));
  };
  double value = 0;
  if (number.empty() || !absl::SimpleAtod(number, &value) || !std::isfinite(value)) return bad("no number");
  if (!unit.empty() && unit.back() == 'b') return bad("a lowercase 'b' means bits to Hugging Face; use 'B' for bytes");
  const std::string u = absl::AsciiStrToLower(unit);
  double scale = 0;
  if (u.empty() || u == "b") scale = 1;
  else if (u == "kb") scale = 1e3;
  else if (u == "mb") scale = 1e6;
  else if (u == "gb") scale = 1e9;
  else if (u == "tb") scale = 1e12;
  else if (u == "kib") scale = 0x1p10;
  else if (u == "mib") scale = 0x1p20;
  else if (u == "gib") scale = 0x1p30;
  else if (u == "tib") scale = 0x1p40;
  else return bad(absl::StrCat("unknown unit '", unit, "'"));
  const double bytes = std::floor(value * scale);
  if (!(bytes >= 1) || bytes > 0x1p62) return bad("the size must be at least 1 byte and below 2^62");
  return static_cast<int64_t>(bytes);
}

std::vector<std::vector<size_t>> plan_shards(const std::vector<int64_t>& tensor_bytes, int64_t max_bytes) {
  std::vector<std::vector<size_t>> shards;
  std::vector<size_t> current;
  int64_t current_bytes = 0;
  for (size_t i = 0; i < tensor_bytes.size(); ++i) {
    if (tensor_bytes[i] > max_bytes) {  // too large for any shard: one of its own, in place
      shards.push_back({i});
      continue;
    }
    if (current_bytes + tensor_bytes[i] > max_bytes && !current.empty()) {
      shards.push_back(std::move(current));
      current.clear();
      current_bytes = 0;
    }
    current.push_back(i);
    current_bytes += tensor_bytes[i];
  }
  if (!current.empty()) shards.push_back(std::move(current));
  return shards;
}

namespace {

absl::Status remove_if_present(const std::string& path) {
  std::error_code ec;
  std::filesystem::remove(path, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot remove the stale ", path, ": ", ec.message()));
  return absl::OkStatus();
}

// Shards of an earlier export under the same stem, which the new index would not name.
absl::Status remove_stale_shards(const std::string& stem) {
  glob_t g{};
  const std::string pattern = stem + "-[0-9][0-9][0-9][0-9][0-9]-of-[0-9][0-9][0-9][0-9][0-9].safetensors";
  const int rc = ::glob(pattern.c_str(), 0, nullptr, &g);
  std::vector<std::string> files;
  if (rc == 0) files.assign(g.gl_pathv, g.gl_pathv + g.gl_pathc);
  ::globfree(&g);
  for (const std::string& f : files) CMOE_RETURN_IF_ERROR(remove_if_present(f));
  return absl::OkStatus();
}

absl::Status write_text(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (f == nullptr) return absl::InternalError(absl::StrCat("cannot create ", tmp));
  const bool ok = std::fwrite(text.data(), 1, text.size(), f) == text.size();
  if (std::fclose(f) != 0 || !ok || std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    return absl::InternalError(absl::StrCat("cannot write ", path));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::vector<std::string>> write_safetensors_shards(const std::string& path,
                                                                  const std::vector<NamedTensor>& tensors,
                                                                  const std::map<std::string, std::string>& metadata,
                                                                  int64_t max_shard_bytes) {
  const std::string stem = path.ends_with(".safetensors") ? path.substr(0, path.size() - 12) : path;
  const std::string index_path = stem + ".safetensors.index.json";
  std::vector<int64_t> bytes;
  for (const NamedTensor& t : tensors) bytes.push_back(static_cast<int64_t>(t.tensor.nbytes()));
  const auto plan = max_shard_bytes > 0 ? plan_shards(bytes, max_shard_bytes) : std::vector<std::vector<size_t>>{};
  // A loader prefers a single file over an index: never leave one of each.
  if (plan.size() <= 1) {
    CMOE_RETURN_IF_ERROR(remove_if_present(index_path));
    CMOE_RETURN_IF_ERROR(remove_stale_shards(stem));
    CMOE_RETURN_IF_ERROR(safetensors_write(path, tensors, metadata));
    return std::vector<std::string>{path};
  }
  CMOE_RETURN_IF_ERROR(remove_if_present(path));
  CMOE_RETURN_IF_ERROR(remove_if_present(index_path));
  CMOE_RETURN_IF_ERROR(remove_stale_shards(stem));
  const size_t n = plan.size();
  std::vector<std::string> written;
  std::map<std::string, std::string> weight_map;  // sorted by name, as save_pretrained writes it
  int64_t total = 0;
  for (size_t s = 0; s < n; ++s) {
    const std::string file = absl::StrFormat("%s-%05d-of-%05d.safetensors", stem, s + 1, n);
    const std::string base = std::filesystem::path(file).filename().string();
    std::vector<NamedTensor> part;
    for (size_t i : plan[s]) {
      part.push_back(tensors[i]);
      weight_map[tensors[i].name] = base;
      total += bytes[i];
    }
    CMOE_RETURN_IF_ERROR(safetensors_write(file, part, metadata));
    written.push_back(file);
  }
  json::Value meta = json::Value::object();
  meta.set("total_size", json::Value::integer(total));
  json::Value wm = json::Value::object();
  for (const auto& [name, file] : weight_map) wm.set(name, json::Value::string(file));
  json::Value index = json::Value::object();
  index.set("metadata", std::move(meta));
  index.set("weight_map", std::move(wm));
  CMOE_RETURN_IF_ERROR(write_text(index_path, json::serialize(index, 2) + "\n"));
  written.push_back(index_path);
  return written;
}

absl::StatusOr<std::string> hf_config_complete(const std::string& config_json, const ExportTokens& tokens) {
  CMOE_ASSIGN_OR_RETURN(json::Value cfg, json::parse(config_json));
  auto id = [&tokens] { return tokens.eos_id ? json::Value::integer(*tokens.eos_id) : json::Value(); };
  const json::Value* theta = cfg.find("rope_theta");
  CMOE_CHECK(cfg.is_object() && theta != nullptr, "hf_config_json wrote no rope_theta");
  json::Value rope = json::Value::object();  // the newer transformers' spelling of rope_theta
  rope.set("rope_type", json::Value::string("default"));
  rope.set("rope_theta", *theta);
  const std::pair<const char*, json::Value> extra[] = {
      {"bos_token_id", id()},
      {"eos_token_id", id()},
      {"use_cache", json::Value::boolean(true)},
      {"pretraining_tp", json::Value::integer(1)},
      {"rope_scaling", json::Value()},
      {"rope_parameters", rope},
      {"attention_dropout", json::Value::number(0.0)},
      {"mlp_bias", json::Value::boolean(false)},
  };
  for (const auto& [key, value] : extra)
    if (cfg.find(key) == nullptr) cfg.set(key, value);
  return json::serialize(cfg, 2) + "\n";
}

std::string hf_generation_config(const config::ModelConfig& m, const ExportTokens& tokens) {
  json::Value g = json::Value::object();
  if (tokens.eos_id) {
    g.set("bos_token_id", json::Value::integer(*tokens.eos_id));
    g.set("eos_token_id", json::Value::integer(*tokens.eos_id));
    g.set("pad_token_id", json::Value::integer(*tokens.eos_id));
  }
  g.set("max_length", json::Value::integer(m.seq_len()));
  return json::serialize(g, 2) + "\n";
}

std::string hf_tokenizer_config(const config::ModelConfig& m, const ExportTokens& tokens) {
  json::Value t = json::Value::object();
  t.set("tokenizer_class", json::Value::string("PreTrainedTokenizerFast"));
  if (tokens.eos_id) {
    t.set("bos_token", json::Value::string(tokens.eos_token));
    t.set("eos_token", json::Value::string(tokens.eos_token));
  }
  t.set("model_max_length", json::Value::integer(m.seq_len()));
  // Byte-level BPE decodes to the exact bytes; no space clean-up after decoding.
  t.set("clean_up_tokenization_spaces", json::Value::boolean(false));
  return json::serialize(t, 2) + "\n";
}

std::string hf_special_tokens_map(const ExportTokens& tokens) {
  json::Value t = json::Value::object();
  if (tokens.eos_id) {
    t.set("bos_token", json::Value::string(tokens.eos_token));
    t.set("eos_token", json::Value::string(tokens.eos_token));
  }
  return json::serialize(t, 2) + "\n";
}

}  // namespace cmoe
