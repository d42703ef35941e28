// train_step_bench.cpp — cmoe's full training step (forward + backward + clip + AdamW) on the
// cpu-small config, for CartesianMoE and its smoe / fine-grained equivalents, in f32 or bf16.
//
// Reports (formulas: docs/metrics.md, written once in moe/trainer.h):
//   tokens_per_s = B * T * steps / wall seconds of the timed steps (after warm-up steps)
//   mfu          = model.flops_per_token() * tokens_per_s / (ops::matmul_peak_gflops(dtype) * 1e9)
//   peak memory  = the CPU allocator's high-water mark over the timed steps, and the process's
//                  max resident set (getrusage), which also counts code, oneDNN scratch, etc.
// One configuration per process, so max RSS belongs to it: bench/run_train_bench.sh runs all
// six next to the PyTorch peer (bench/torch_peer.py) and prints the table.
//
// usage: train_step_bench --variant cartesian|smoe|fine_grained --precision f32|bf16
//                         [--steps 5] [--warmup 2] [--config configs/cpu-small.textproto]
#include <omp.h>
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>

#include "core/allocator.h"
#include "moe/train/config.h"
#include "core/ops/matmul.h"
#include "core/rng.h"
#include "moe/model.h"
#include "moe/train/optimizer.h"

namespace cmoe {
namespace {

struct Args {
  std::string variant = "cartesian", precision = "f32", config = CMOE_SOURCE_DIR "/configs/cpu-small.textproto";
  int steps = 5, warmup = 2;
};

int run(const Args& a) {
  std::vector<std::string> sets;
  if (a.variant == "smoe") {
    sets = {"model.moe.kind=SMOE"};  // N experts of D, top-2, one shared expert of D
  } else if (a.variant == "fine_grained") {
    sets = {"model.moe.kind=FINE_GRAINED"};  // 2N of D/2, top-4, two shared D/2
  } else if (a.variant != "cartesian") {
    std::fprintf(stderr, "train_step_bench: unknown --variant %s (cartesian, smoe, fine_grained)\n", a.variant.c_str());
    return 2;
  }
  sets.push_back("train.precision=" + a.precision);
  auto cfg = config_load(a.config, sets);
  if (!cfg.ok()) {
    std::fprintf(stderr, "train_step_bench: %s\n", std::string(cfg.status().message()).c_str());
    return 1;
  }
  const auto& m = cfg->model();
  const auto& t = cfg->train();
  const DType dtype = t.precision() == "bf16" ? DType::kBF16 : DType::kF32;
  const int64_t B = t.micro_batch_size(), T = m.seq_len();

  Model model(m, t.seed());
  AdamWOptions ao;
  ao.beta1 = t.beta1(), ao.beta2 = t.beta2(), ao.eps = t.adam_eps(), ao.weight_decay = t.weight_decay();
  AdamW opt(&model.params(), ao);
  ForwardOptions fo;
  fo.compute_dtype = dtype;
  fo.recompute_attention = t.recompute();

  Tensor ids = Tensor::empty({B, T}, DType::kI32), targets = Tensor::empty({B, T}, DType::kI32);
  auto fill_batch = [&](int step) {
    for (int64_t i = 0; i < B * T; ++i) {
      ids.data<int32_t>()[i] = static_cast<int32_t>(rng_u32(t.seed(), 100 + step, i) % m.vocab_size());
      targets.data<int32_t>()[i] = static_cast<int32_t>(rng_u32(t.seed(), 10000 + step, i) % m.vocab_size());
    }
  };
  auto train_step = [&](int step) {
    ForwardResult f = model.forward(ids, targets, fo);
    ag::backward(f.loss);
    const double gn = grad_global_norm(model.params());
    opt.step(lr_at(step, t), t.grad_clip() > 0 && gn > t.grad_clip() ? static_cast<float>(t.grad_clip() / gn) : 1.0f);
    for (Param& p : model.params()) p.var.zero_grad();
    return f.ce;
  };

  const double peak = ops::matmul_peak_gflops(dtype) * 1e9;  // measured before the timed steps
  double loss = 0;
  for (int s = 0; s < a.warmup; ++s) {
    fill_batch(s);
    loss = train_step(s);
  }
  Allocator& alloc = allocator_for(DeviceType::kCPU);
  alloc.reset_peak();
  double secs = 0;
  for (int s = a.warmup; s < a.warmup + a.steps; ++s) {
    fill_batch(s);  // outside the timed region: data loading is not the step
    const auto t0 = std::chrono::steady_clock::now();
    loss = train_step(s);
    secs += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  const double tps = static_cast<double>(B * T * a.steps) / secs;
  const double mfu = model.flops_per_token() * tps / peak;
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  const double rss_mb = ru.ru_maxrss / 1024.0, alloc_mb = alloc.peak_bytes() / (1024.0 * 1024.0);
  std::printf(
      "{\"impl\": \"cmoe\", \"variant\": \"%s\", \"precision\": \"%s\", \"threads\": %d, \"tokens_per_s\": %.1f, "
      "\"step_s\": %.4f, \"mfu\": %.4f, \"peak_gflops\": %.1f, \"flops_per_token\": %.4g, \"alloc_peak_mb\": %.1f, "
      "\"max_rss_mb\": %.1f, \"loss\": %.4f, \"steps\": %d}\n",
      a.variant.c_str(), a.precision.c_str(), omp_get_max_threads(), tps, secs / a.steps, mfu, peak / 1e9,
      model.flops_per_token(), alloc_mb, rss_mb, loss, a.steps);
  return 0;
}

}  // namespace
}  // namespace cmoe

int main(int argc, char** argv) {
  cmoe::Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string f = argv[i];
    const bool has_value = i + 1 < argc;
    if (f == "--variant" && has_value) a.variant = argv[++i];
    else if (f == "--precision" && has_value) a.precision = argv[++i];
    else if (f == "--steps" && has_value) a.steps = std::atoi(argv[++i]);
    else if (f == "--warmup" && has_value) a.warmup = std::atoi(argv[++i]);
    else if (f == "--config" && has_value) a.config = argv[++i];
    else {
      std::fprintf(stderr,
                   "usage: %s --variant cartesian|smoe|fine_grained --precision f32|bf16 [--steps N] [--warmup N] "
                   "[--config FILE]\n",
                   argv[0]);
      return 2;
    }
  }
  if (a.steps < 1 || a.warmup < 0) {
    std::fprintf(stderr, "train_step_bench: --steps must be >= 1 and --warmup >= 0\n");
    return 2;
  }
  return cmoe::run(a);
}
