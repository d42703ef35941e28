// gpu_train_bench.cpp — cmoe's training step on one GPU, and its grouped expert GEMM against one
// dense GEMM of the same total size (the GPU figures of docs/benchmarks.md, "GPU check").
//
//   step: the paper's MoE-Base CartesianMoE (configs/paper/moe-base-cartesian.textproto: bf16,
//         seq 2048) through the training library's TrainStep (moe/train/step.h) on cuda:0 with
//         synthetic tokens, after warm-up steps:
//           tokens_per_s = B * T * steps / wall seconds of the timed steps
//           mfu          = model.flops_per_token() * tokens_per_s / (cuBLAS bf16 peak)
//         the peak measured in the same process (cuda::matmul_peak_gflops: 8192^3 bf16 GEMMs).
//   grouped GEMM: the first expert set's forward product, x (R, K) @ w_g^T (M, K) over E equal
//         segments of R = tokens * top-k rows, one cublasGemmGroupedBatchedEx call, against one
//         dense (R, K) @ (M, K)^T GEMM of the same FLOPs; both timed after warm-up, best of runs.
//
// Prints key=value lines (scripts/gpu-check.sh reads them). Needs a GPU; without one it says why
// and exits 77 (a skip).
//
// usage: gpu_train_bench [--config FILE] [--micro-batch N] [--steps N] [--warmup N] [--set k=v]...
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "core/cuda/context.h"
#include "core/cuda/cuda_backend.h"
#include "core/cuda/kernels.h"
#include "core/cuda/plugin_loader.h"
#include "core/rng.h"
#include "moe/model.h"
#include "moe/train/config.h"
#include "moe/train/optimizer.h"
#include "moe/train/step.h"

namespace cmoe {
namespace {

struct Args {
  std::string config = CMOE_SOURCE_DIR "/configs/paper/moe-base-cartesian.textproto";
  int micro_batch = 4, steps = 5, warmup = 2;
  std::vector<std::string> sets;
};

// Best time of `runs` calls of fn (each synchronised), after two warm-up calls.
template <typename F>
double best_seconds(Device d, int runs, F fn) {
  for (int i = 0; i < 2; ++i) fn();
  cuda::synchronize(d);
  double best = 1e30;
  for (int i = 0; i < runs; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    cuda::synchronize(d);
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return best;
}

int run(const Args& a) {
  const absl::StatusOr<int> gpus = cuda::device_count();
  if (!gpus.ok()) {
    std::printf("skipped=no GPU (%s)\n", std::string(gpus.status().message()).c_str());
    return 77;
  }
  if (absl::Status st = cuda::init(0); !st.ok()) {
    std::fprintf(stderr, "gpu_train_bench: %s\n", std::string(st.message()).c_str());
    return 1;
  }
  std::vector<std::string> sets = {"train.micro_batch_size=" + std::to_string(a.micro_batch), "train.grad_accum=1",
                                   "train.device=cuda"};
  sets.insert(sets.end(), a.sets.begin(), a.sets.end());
  auto cfg = config_load(a.config, sets);
  if (!cfg.ok()) {
    std::fprintf(stderr, "gpu_train_bench: %s\n", std::string(cfg.status().message()).c_str());
    return 1;
  }
  const Device dev = cuda_device(0);
  const auto& m = cfg->model();
  const auto& t = cfg->train();
  const DType dtype = compute_dtype(t);
  const int64_t B = t.micro_batch_size(), T = m.seq_len();
  const double peak = cuda::matmul_peak_gflops(dev, DType::kBF16) * 1e9;

  // ---- the training step ----
  Model model(m, t.seed());
  AdamW opt(&model.params(), {t.beta1(), t.beta2(), t.adam_eps(), t.weight_decay()});
  model.to_device(dev);
  opt.to_device(dev);
  int64_t made = 0;
  TrainStep step(*cfg, model, opt, nullptr, [&]() -> absl::StatusOr<Batch> {
    std::vector<int32_t> ids(B * T), targets(ids.size());
    for (size_t i = 0; i < ids.size(); ++i) {
      ids[i] = static_cast<int32_t>(rng_u32(t.seed(), 100 + made, i) % m.vocab_size());
      targets[i] = static_cast<int32_t>(rng_u32(t.seed(), 10000 + made, i) % m.vocab_size());
    }
    ++made;
    return Batch{Tensor::from_ints({B, T}, ids), Tensor::from_ints({B, T}, targets)};
  });
  double loss = 0, secs = 0, peak_mb = 0;
  for (int s = 0; s < a.warmup + a.steps; ++s) {
    auto r = step.run(s);
    if (!r.ok()) {
      std::fprintf(stderr, "gpu_train_bench: step %d: %s\n", s + 1, std::string(r.status().message()).c_str());
      return 1;
    }
    loss = r->record.loss;
    peak_mb = std::max(peak_mb, r->record.peak_device_mb);
    if (s >= a.warmup) secs += r->record.seconds;  // TrainStep synchronises before timing
  }
  const double tps = static_cast<double>(B * T * a.steps) / secs;
  const double mfu = model.flops_per_token() * tps / peak;
  char name[256] = "";
  size_t mem = 0;
  int32_t major = 0, minor = 0;
  (void)cuda::loaded_api().device_info(name, sizeof(name), &mem, &major, &minor, 0);
  std::printf("gpu=%s\nsm=%d%d\nconfig=%s\nprecision=%s\nmicro_batch=%lld\nseq=%lld\n", name, major, minor,
              a.config.c_str(), dtype_name(dtype), static_cast<long long>(B), static_cast<long long>(T));
  std::printf("peak_bf16_tflops=%.1f\nstep_s=%.4f\ntokens_per_s=%.0f\nmfu=%.4f\npeak_device_mb=%.0f\nloss=%.4f\n",
              peak / 1e12, secs / a.steps, tps, mfu, peak_mb, loss);
  std::fflush(stdout);

  // ---- grouped expert GEMM against one dense GEMM ----
  Tensor w;
  for (const Param& p : model.params()) {
    if (p.name.find(".experts.w1") != std::string::npos) {
      w = p.var.value();  // (E, M, K)
      break;
    }
  }
  if (!w.defined()) {
    std::printf("grouped=none (the model has no experts)\n");
    return 0;
  }
  const int64_t E = w.dim(0), M = w.dim(1), K = w.dim(2);
  const int64_t R = (B * T * m.moe().top_k()) / E * E;  // routed rows, a multiple of E
  Tensor x = cuda::to_compute(Tensor::full({R, K}, 0.01f, dev), DType::kBF16);
  Tensor wc = cuda::to_compute(w, DType::kBF16);
  Tensor out = Tensor::empty({R, M}, DType::kF32, dev);
  std::vector<int64_t> offsets(static_cast<size_t>(E + 1));
  for (int64_t e = 0; e <= E; ++e) offsets[e] = e * (R / E);
  const double flops = 2.0 * static_cast<double>(R) * M * K;
  const double g = best_seconds(dev, 10, [&] { cuda::grouped_linear_forward(out, x, wc, offsets, DType::kBF16); });
  // The dense twin: (R, K) @ (M, K)^T, the same FLOPs in one GEMM.
  Tensor dense_w = wc.slice0(0, 1).view({M, K});
  const double d = best_seconds(dev, 10, [&] { cuda::linear_forward(out, x, dense_w, DType::kBF16); });
  const int32_t path = cuda::loaded_api().blas_grouped_path();
  std::printf("grouped_shape=%lldx%lldx%lld in %lld groups\n", static_cast<long long>(R), static_cast<long long>(M),
              static_cast<long long>(K), static_cast<long long>(E));
  std::printf("grouped_tflops=%.1f\ndense_tflops=%.1f\ngrouped_over_dense=%.3f\ngrouped_path=%s\n", flops / g / 1e12,
              flops / d / 1e12, d / g, path == 1 ? "grouped" : path == 0 ? "per-group" : "none");
  return 0;
}

}  // namespace
}  // namespace cmoe

int main(int argc, char** argv) {
  cmoe::Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string f = argv[i];
    const bool has_value = i + 1 < argc;
    if (f == "--config" && has_value) a.config = argv[++i];
    else if (f == "--micro-batch" && has_value) a.micro_batch = std::atoi(argv[++i]);
    else if (f == "--steps" && has_value) a.steps = std::atoi(argv[++i]);
    else if (f == "--warmup" && has_value) a.warmup = std::atoi(argv[++i]);
    else if (f == "--set" && has_value) a.sets.push_back(argv[++i]);
    else {
      std::fprintf(stderr, "usage: %s [--config FILE] [--micro-batch N] [--steps N] [--warmup N] [--set k=v]...\n",
                   argv[0]);
      return 2;
    }
  }
  if (a.steps < 1 || a.warmup < 0 || a.micro_batch < 1) {
    std::fprintf(stderr, "gpu_train_bench: --steps and --micro-batch must be >= 1, --warmup >= 0\n");
    return 2;
  }
  return cmoe::run(a);
}
