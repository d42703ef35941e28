// cmd_export.cpp — `cmoe export`: a checkpoint's weights as safetensors with Hugging Face
// names (optionally sharded), and beside them config.json, generation_config.json and the
// tokenizer files, so the directory loads elsewhere (docs/export.md; names: moe/hf_export.h;
// the other files: launch/export_hf.h).
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>

#include "absl/strings/str_cat.h"
#include "checkpoint/checkpoint.h"
#include "checkpoint/safetensors.h"
#include "data/tokenizer.h"
#include "moe/train/config.h"
#include "launch/commands.h"
#include "launch/export_hf.h"
#include "launch/command_line.h"
#include "moe/hf_export.h"

namespace cmoe {

namespace {

// The tokenizer that goes with the export: --tokenizer FILE, else the run config's
// data.tokenizer. A missing data.tokenizer file is a warning (the weights are still exported);
// an explicit --tokenizer that cannot be read, or any tokenizer with ids beyond the model's
// vocabulary, is an error.
absl::StatusOr<std::optional<std::pair<std::string, Tokenizer>>> find_tokenizer(const config::RunConfig& cfg,
                                                                                const std::string& flag) {
  std::string path = flag;
  if (path.empty()) {
    path = cfg.data().tokenizer();
    if (path.empty()) {
      std::fprintf(stderr, "cmoe export: warning: the checkpoint's config has no data.tokenizer, so no tokenizer.json "
                           "is written; pass --tokenizer FILE (the tokenizer.json the data was made with)\n");
      return std::nullopt;
    }
    if (!std::filesystem::exists(path)) {
      std::fprintf(stderr, "cmoe export: warning: data.tokenizer = %s does not exist here (relative paths are "
                           "relative to where training ran), so no tokenizer.json is written; pass --tokenizer FILE\n",
                   path.c_str());
      return std::nullopt;
    }
  }
  CMOE_ASSIGN_OR_RETURN(Tokenizer tok, Tokenizer::load(path));
  if (tok.vocab_size() > cfg.model().vocab_size()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": the tokenizer has ids up to ", tok.vocab_size() - 1,
                                                   ", beyond the model's vocab_size ", cfg.model().vocab_size(),
                                                   ": not the tokenizer this model was trained with"));
  }
  return std::make_optional(std::make_pair(path, std::move(tok)));
}

absl::Status copy_file_atomic(const std::string& from, const std::string& to) {
  const std::string tmp = to + ".tmp";
  std::error_code ec;
  std::filesystem::copy_file(from, tmp, std::filesystem::copy_options::overwrite_existing, ec);
  if (!ec) std::filesystem::rename(tmp, to, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot copy ", from, " to ", to, ": ", ec.message()));
  return absl::OkStatus();
}

absl::Status write_file(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << text;
  f.close();
  if (!f) return absl::InternalError(absl::StrCat("cannot write ", path));
  return absl::OkStatus();
}

struct ExportArgs {
  std::string checkpoint, out, dtype, tokenizer;
  int64_t shard_bytes = 0;  // 0: one file
};

absl::Status run_export(const ExportArgs& a) {
  // A step directory, or a checkpoints root whose `latest` names one.
  std::string dir = a.checkpoint;
  if (!std::filesystem::exists(dir + "/manifest.pb")) {
    CMOE_ASSIGN_OR_RETURN(dir, checkpoint_latest(a.checkpoint));
  }
  CMOE_ASSIGN_OR_RETURN(LoadedCheckpoint ck, checkpoint_load(dir));
  CMOE_ASSIGN_OR_RETURN(config::RunConfig cfg, config_parse(ck.manifest.config(), dir + "/manifest.pb (config)"));
  CMOE_RETURN_IF_ERROR(config_validate(cfg));
  CMOE_ASSIGN_OR_RETURN(auto tokenizer, find_tokenizer(cfg, a.tokenizer));
  auto lookup = [&ck](const std::string& name) {
    auto it = ck.tensors.find(name);
    return it == ck.tensors.end() ? Tensor() : it->second;
  };
  CMOE_ASSIGN_OR_RETURN(std::vector<HfTensor> hf, hf_export_tensors(cfg.model(), lookup));
  std::vector<NamedTensor> tensors;
  int64_t params = 0;
  for (HfTensor& t : hf) {
    const bool weight = t.tensor.dtype() == DType::kF32;
    if (weight) params += t.tensor.numel();
    tensors.push_back({t.name, weight && a.dtype == "bf16" ? t.tensor.to_dtype(DType::kBF16) : t.tensor});
  }
  const std::map<std::string, std::string> meta = {
      {"format", "pt"}, {"cmoe_step", absl::StrCat(ck.manifest.step())}, {"cmoe_checkpoint", dir}};
  // --out DIR/ (or an existing directory) means DIR/model.safetensors, the name loaders look for.
  std::string out = a.out;
  if (out.ends_with("/") || std::filesystem::is_directory(out)) out = (std::filesystem::path(out) / "model.safetensors").string();
  std::filesystem::path out_path(out);
  const std::filesystem::path parent = out_path.parent_path().empty() ? "." : out_path.parent_path();
  std::error_code ec;
  std::filesystem::create_directories(parent, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot create ", parent.string(), ": ", ec.message()));
  CMOE_ASSIGN_OR_RETURN(std::vector<std::string> files, write_safetensors_shards(out, tensors, meta, a.shard_bytes));

  ExportTokens tokens;
  if (tokenizer) {
    tokens.eos_id = tokenizer->second.eot_id();
    tokens.eos_token = kEndOfText;
    tokens.tokenizer_vocab = tokenizer->second.vocab_size();
    if (!tokens.eos_id) {
      std::fprintf(stderr, "cmoe export: warning: %s has no %s token; bos/eos ids are left unset\n",
                   tokenizer->first.c_str(), kEndOfText);
    }
  }
  const std::string cfg_path = (parent / "config.json").string();
  CMOE_ASSIGN_OR_RETURN(std::string config_json,
                        hf_config_complete(hf_config_json(cfg.model(), a.dtype == "bf16" ? "bfloat16" : "float32"), tokens));
  CMOE_RETURN_IF_ERROR(write_file(cfg_path, config_json));
  CMOE_RETURN_IF_ERROR(write_file((parent / "generation_config.json").string(), hf_generation_config(cfg.model(), tokens)));
  if (tokenizer) {
    CMOE_RETURN_IF_ERROR(copy_file_atomic(tokenizer->first, (parent / "tokenizer.json").string()));
    CMOE_RETURN_IF_ERROR(write_file((parent / "tokenizer_config.json").string(), hf_tokenizer_config(cfg.model(), tokens)));
    CMOE_RETURN_IF_ERROR(write_file((parent / "special_tokens_map.json").string(), hf_special_tokens_map(tokens)));
  }
  std::printf("exported %s (step %lld): %zu tensors, %.2fM parameters, %s -> %s\n", dir.c_str(),
              static_cast<long long>(ck.manifest.step()), tensors.size(), params / 1e6, a.dtype.c_str(), out.c_str());
  if (files.size() > 1) {
    std::printf("shards: %zu files of at most %lld bytes each (a larger tensor alone), index %s\n", files.size() - 1,
                static_cast<long long>(a.shard_bytes), files.back().c_str());
  }
  std::printf("config: %s\n", cfg_path.c_str());
  std::printf("also: generation_config.json%s in %s\n",
              tokenizer ? absl::StrCat(", tokenizer.json (from ", tokenizer->first,
                                       "), tokenizer_config.json, special_tokens_map.json").c_str()
                        : " (no tokenizer)",
              parent.string().c_str());
  return absl::OkStatus();
}

}  // namespace

int cmd_export(int argc, char** argv) {
  const std::vector<FlagSpec> specs = {
      {"checkpoint", true, false, "checkpoint step directory, or a checkpoints root with a 'latest' file"},
      {"format", true, false, "output format: safetensors (the only one)"},
      {"out", true, false, "output file, or DIR/ for DIR/model.safetensors; config.json and the rest go beside it"},
      {"dtype", true, false, "f32 (default) or bf16 for the weights"},
      {"tokenizer", true, false, "tokenizer.json to ship (default: the run config's data.tokenizer)"},
      {"shard-size", true, false, "split the weights into shards of at most this size (e.g. 2GB, 500MB, 1GiB)"},
  };
  auto flags = parse_command_line({"export", specs, {"checkpoint", "out"}}, argc, argv, 2);
  if (!flags) return kExitUsage;
  const std::string format = flags->get("format", "safetensors"), dtype = flags->get("dtype", "f32");
  if (format != "safetensors") {
    std::fprintf(stderr, "cmoe export: --format %s is not supported (allowed: safetensors)\n", format.c_str());
    return 2;
  }
  if (dtype != "f32" && dtype != "bf16") {
    std::fprintf(stderr, "cmoe export: --dtype %s is not supported (allowed: f32, bf16)\n", dtype.c_str());
    return 2;
  }
  ExportArgs args{flags->get("checkpoint"), flags->get("out"), dtype, flags->get("tokenizer")};
  if (flags->has("shard-size")) {
    auto bytes = parse_shard_size(flags->get("shard-size"));
    if (!bytes.ok()) {
      std::fprintf(stderr, "cmoe export: %s\n", std::string(bytes.status().message()).c_str());
      return 2;
    }
    args.shard_bytes = *bytes;
  }
  if (absl::Status st = run_export(args); !st.ok()) return command_failed("export", st);
  return 0;
}

}  // namespace cmoe
