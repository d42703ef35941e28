// cmd_export.cpp — `cmoe export`: a checkpoint's weights as safetensors with Hugging Face
// names, plus config.json beside them (names: docs/export.md; mapping: moe/hf_export.h).
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "checkpoint/checkpoint.h"
#include "checkpoint/safetensors.h"
#include "moe/train/config.h"
#include "launch/commands.h"
#include "launch/flags.h"
#include "moe/hf_export.h"

namespace cmoe {

namespace {

absl::Status run_export(const std::string& ck_arg, const std::string& out, const std::string& dtype) {
  // A step directory, or a checkpoints root whose `latest` names one.
  std::string dir = ck_arg;
  if (!std::filesystem::exists(dir + "/manifest.pb")) {
    CMOE_ASSIGN_OR_RETURN(dir, checkpoint_latest(ck_arg));
  }
  CMOE_ASSIGN_OR_RETURN(LoadedCheckpoint ck, checkpoint_load(dir));
  CMOE_ASSIGN_OR_RETURN(config::RunConfig cfg, config_parse(ck.manifest.config(), dir + "/manifest.pb (config)"));
  CMOE_RETURN_IF_ERROR(config_validate(cfg));
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
    tensors.push_back({t.name, weight && dtype == "bf16" ? t.tensor.to_dtype(DType::kBF16) : t.tensor});
  }
  const std::map<std::string, std::string> meta = {
      {"format", "pt"}, {"cmoe_step", absl::StrCat(ck.manifest.step())}, {"cmoe_checkpoint", dir}};
  std::filesystem::path out_path(out);
  const std::filesystem::path parent = out_path.parent_path().empty() ? "." : out_path.parent_path();
  std::error_code ec;
  std::filesystem::create_directories(parent, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot create ", parent.string(), ": ", ec.message()));
  CMOE_RETURN_IF_ERROR(safetensors_write(out, tensors, meta));

  const std::string cfg_path = (parent / "config.json").string();
  std::ofstream cj(cfg_path);
  cj << hf_config_json(cfg.model(), dtype == "bf16" ? "bfloat16" : "float32");
  cj.close();
  if (!cj) return absl::InternalError(absl::StrCat("cannot write ", cfg_path));
  std::printf("exported %s (step %lld): %zu tensors, %.2fM parameters, %s -> %s\n", dir.c_str(),
              static_cast<long long>(ck.manifest.step()), tensors.size(), params / 1e6, dtype.c_str(), out.c_str());
  std::printf("config: %s\n", cfg_path.c_str());
  return absl::OkStatus();
}

}  // namespace

int cmd_export(int argc, char** argv) {
  const std::vector<FlagSpec> specs = {
      {"checkpoint", true, false, "checkpoint step directory, or a checkpoints root with a 'latest' file"},
      {"format", true, false, "output format: safetensors (the only one)"},
      {"out", true, false, "output file; config.json is written beside it"},
      {"dtype", true, false, "f32 (default) or bf16 for the weights"},
  };
  auto flags = flags_parse("export", specs, argc, argv, 2);
  if (!flags.ok()) {
    std::fprintf(stderr, "%s\n", std::string(flags.status().message()).c_str());
    return 2;
  }
  if (!flags->has("checkpoint") || !flags->has("out") || !flags->positional.empty()) {
    std::fprintf(stderr, "cmoe export: --checkpoint DIR and --out FILE are required\n%s",
                 flags_usage("export", specs).c_str());
    return 2;
  }
  const std::string format = flags->get("format", "safetensors"), dtype = flags->get("dtype", "f32");
  if (format != "safetensors") {
    std::fprintf(stderr, "cmoe export: --format %s is not supported (allowed: safetensors)\n", format.c_str());
    return 2;
  }
  if (dtype != "f32" && dtype != "bf16") {
    std::fprintf(stderr, "cmoe export: --dtype %s is not supported (allowed: f32, bf16)\n", dtype.c_str());
    return 2;
  }
  absl::Status st = run_export(flags->get("checkpoint"), flags->get("out"), dtype);
  if (!st.ok()) {
    std::fprintf(stderr, "cmoe export: %s\n", std::string(st.message()).c_str());
    return 1;
  }
  return 0;
}

}  // namespace cmoe
