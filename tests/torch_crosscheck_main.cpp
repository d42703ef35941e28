// torch_crosscheck_main.cpp — the cmoe half of the PyTorch cross-check (tests/torch/).
//
// For every FFN variant it builds a small model (fixed seed), runs forward and backward in f32
// on a fixed batch, and writes under OUTDIR/<variant>/:
//   ckpt/              a checkpoint of the weights (the Python driver exports it with `cmoe export`)
//   batch.safetensors  ids, targets: (B, T) I32 (targets -1 = ignored)
//   grads.safetensors  every parameter's gradient under its export name (moe/hf_export.h)
//   result.json        loss, ce, aux, tokens, and per router its expert counts and balance term
// tests/torch/crosscheck.py recomputes all of it in float64 PyTorch and compares.
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "checkpoint/checkpoint.h"
#include "checkpoint/safetensors.h"
#include "moe/train/config.h"
#include "core/rng.h"
#include "moe/hf_export.h"
#include "moe/model.h"

namespace cmoe {
namespace {

constexpr uint64_t kSeed = 20241021;
constexpr int64_t kBatch = 2;

struct Variant {
  const char* name;
  std::vector<std::string> overrides;  // --set style, on top of the base below
};

// The base: configs/tiny.textproto's shape with a wider init so routers make clear choices.
const char* kBase =
    "model { vocab_size: 512 d_model: 64 n_layers: 2 n_heads: 4 ffn_hidden: 128 seq_len: 32 init_std: 0.1 "
    "moe { interval: 2 num_experts: 4 top_k: 2 } }";

const std::vector<Variant> kVariants = {
    {"dense", {"model.moe.kind=DENSE"}},
    {"smoe_shared", {"model.moe.kind=SMOE"}},
    {"smoe_top3", {"model.moe.kind=SMOE", "model.moe.shared_expert=false", "model.moe.top_k=3",
                   "model.moe.expert_hidden=160"}},
    {"smoe_capacity", {"model.moe.kind=SMOE", "model.moe.capacity_factor=1.0"}},
    {"smoe_aux_free_zloss", {"model.moe.kind=SMOE", "model.moe.aux_free_bias=true", "model.moe.z_loss_coef=0.01"}},
    {"fine_grained", {"model.moe.kind=FINE_GRAINED"}},
    {"cartesian", {"model.moe.kind=CARTESIAN", "model.moe.aux_loss_coef=0.1", "model.moe.z_loss_coef=0.001"}},
    {"cartesian_noshared", {"model.moe.kind=CARTESIAN", "model.moe.shared_expert=false"}},
    {"hash", {"model.moe.kind=HASH", "model.moe.hash_seed=7"}},
    {"topp", {"model.moe.kind=TOPP", "model.moe.top_p=0.4"}},
};

absl::Status run_variant(const Variant& v, const std::string& root) {
  CMOE_ASSIGN_OR_RETURN(config::RunConfig cfg, config_parse(kBase, "torch_crosscheck base"));
  for (const std::string& o : v.overrides) CMOE_RETURN_IF_ERROR(config_set(cfg, o));
  CMOE_RETURN_IF_ERROR(config_validate(cfg));
  const auto& m = cfg.model();
  Model model(m, kSeed);
  // Non-zero selection biases, so the aux-loss-free path changes the choices it should.
  for (Param& b : model.router_biases()) {
    rng_fill_normal(b.var.mutable_value(), 0.0f, 0.05f, kSeed, rng_stream_id(b.name));
  }

  // A fixed batch: random ids, targets the next id, with a few ignored (-1) positions.
  const int64_t T = m.seq_len(), N = kBatch * T;
  Tensor ids = Tensor::empty({kBatch, T}, DType::kI32), targets = Tensor::empty({kBatch, T}, DType::kI32);
  for (int64_t i = 0; i < N; ++i) ids.data<int32_t>()[i] = static_cast<int32_t>(rng_u32(kSeed, 1, i) % m.vocab_size());
  for (int64_t i = 0; i < N; ++i) {
    const bool last = (i + 1) % T == 0, drop = rng_u32(kSeed, 2, i) % 8 == 0;
    targets.data<int32_t>()[i] = last || drop ? -1 : ids.data<int32_t>()[i + 1];
  }

  ForwardOptions opt;  // f32 compute
  ForwardResult f = model.forward(ids, targets, opt);
  ag::backward(f.loss);

  const std::string dir = absl::StrCat(root, "/", v.name);
  std::filesystem::create_directories(dir);
  checkpoint::Manifest meta;
  meta.set_config(config_to_text(cfg));
  meta.set_step(0);
  meta.set_seed(kSeed);
  std::vector<NamedTensor> weights;
  for (const Param& p : model.params()) weights.push_back({p.name, p.var.value()});
  for (const Param& p : model.router_biases()) weights.push_back({p.name, p.var.value()});
  CMOE_RETURN_IF_ERROR(checkpoint_save(dir + "/ckpt", meta, weights, 1).status());

  CMOE_RETURN_IF_ERROR(safetensors_write(dir + "/batch.safetensors", {{"ids", ids}, {"targets", targets}}));
  std::map<std::string, Tensor> grads;
  for (const Param& p : model.params()) {
    // A parameter no gradient reached (an expert no token chose) has a zero gradient.
    grads[p.name] = p.var.grad().defined() ? p.var.grad() : Tensor::zeros(p.var.value().shape(), DType::kF32);
  }
  HfExportOptions eo;
  eo.buffers = false;
  CMOE_ASSIGN_OR_RETURN(std::vector<HfTensor> hg, hf_export_tensors(m, [&grads](const std::string& n) {
                          auto it = grads.find(n);
                          return it == grads.end() ? Tensor() : it->second;
                        }, eo));
  std::vector<NamedTensor> gl;
  for (HfTensor& t : hg) gl.push_back({t.name, t.tensor.clone()});
  CMOE_RETURN_IF_ERROR(safetensors_write(dir + "/grads.safetensors", gl));

  std::string routers;
  for (const RouterReport& r : f.routers) {
    absl::StrAppend(&routers, routers.empty() ? "" : ", ", "\"", r.name, "\": {\"counts\": [",
                    absl::StrJoin(r.counts, ", "), "], \"aux\": ", absl::StrFormat("%.9g", r.aux), "}");
  }
  std::ofstream(dir + "/result.json") << absl::StrFormat(
      "{\"variant\": \"%s\", \"loss\": %.9g, \"ce\": %.9g, \"aux\": %.9g, \"tokens\": %d, \"routers\": {%s}}\n", v.name,
      f.loss.value().data<float>()[0], f.ce, f.aux, f.tokens, routers);
  std::printf("%-22s loss %.6f  ce %.6f  aux %.6f  (%zu params)\n", v.name, f.loss.value().data<float>()[0], f.ce, f.aux,
              model.params().size());
  return absl::OkStatus();
}

}  // namespace
}  // namespace cmoe

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s OUTDIR\n", argv[0]);
    return 2;
  }
  for (const cmoe::Variant& v : cmoe::kVariants) {
    absl::Status st = cmoe::run_variant(v, argv[1]);
    if (!st.ok()) {
      std::fprintf(stderr, "torch_crosscheck: %s: %s\n", v.name, std::string(st.message()).c_str());
      return 1;
    }
  }
  return 0;
}
