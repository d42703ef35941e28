// train_step_bench.cpp — cmoe's full training step (forward + backward + clip + AdamW) on the
// cpu-small config, for CartesianMoE and its smoe / fine-grained equivalents, in f32 or bf16.
//
// The step is the training library's TrainStep (moe/train/step.h), the one `cmoe train` runs.
// Reports (formulas: docs/metrics.md, written once in moe/train/metrics.h):
//   tokens_per_s = B * T * steps / wall seconds of the timed steps (after warm-up steps)
//   mfu          = model.flops_per_token() * tokens_per_s / (ops::matmul_peak_gflops(dtype) * 1e9)
//   mfu_paired   = the median over the timed steps of each step's MFU against the peak measured
//                  again (0.1 s) right after that step (ops::matmul_rate_gflops)
//   peak memory  = the CPU allocator's high-water mark over the timed steps, and the process's
//                  max resident set (getrusage), which also counts code, oneDNN scratch, etc.
// One configuration per process, so max RSS belongs to it: bench/run_train_bench.sh runs all
// six next to the PyTorch peer (bench/torch_peer.py) and prints the table.
//
// usage: train_step_bench --variant cartesian|smoe|fine_grained --precision f32|bf16
//                         [--steps 5] [--warmup 2] [--config configs/cpu-small.textproto]
#include <omp.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "core/allocator.h"
#include "moe/train/config.h"
#include "core/ops/matmul.h"
#include "core/rng.h"
#include "moe/model.h"
#include "moe/train/optimizer.h"
#include "moe/train/step.h"

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
  const DType dtype = compute_dtype(t);
  const int64_t B = t.micro_batch_size() * t.grad_accum(), T = m.seq_len();

  Model model(m, t.seed());
  AdamW opt(&model.params(), {t.beta1(), t.beta2(), t.adam_eps(), t.weight_decay()});
  // Every step's micro-batches made before timing: data loading is not the step.
  std::vector<Batch> data;
  for (int s = 0; s < (a.warmup + a.steps) * t.grad_accum(); ++s) {
    std::vector<int32_t> ids(t.micro_batch_size() * T), targets(ids.size());
    for (size_t i = 0; i < ids.size(); ++i) {
      ids[i] = static_cast<int32_t>(rng_u32(t.seed(), 100 + s, i) % m.vocab_size());
      targets[i] = static_cast<int32_t>(rng_u32(t.seed(), 10000 + s, i) % m.vocab_size());
    }
    data.push_back({Tensor::from_ints({t.micro_batch_size(), T}, ids), Tensor::from_ints({t.micro_batch_size(), T}, targets)});
  }
  size_t next = 0;
  TrainStep step(*cfg, model, opt, nullptr, [&]() -> absl::StatusOr<Batch> { return data[next++]; });
  auto train_step = [&](int s) {
    auto r = step.run(s);
    CMOE_CHECK(r.ok(), r.status().message());
    return r->record.loss;
  };

  const double peak = ops::matmul_peak_gflops(dtype) * 1e9;  // measured before the timed steps
  double loss = 0;
  for (int s = 0; s < a.warmup; ++s) loss = train_step(s);
  Allocator& alloc = allocator_for(DeviceType::kCPU);
  alloc.reset_peak();
  double secs = 0;
  // Paired MFU: each step against the peak re-measured (0.1 s) right after it, outside its
  // timing; the median over the steps. On a machine whose speed drifts by tens of percent over
  // seconds (a shared VM), this compares the step with the machine's speed at the time.
  std::vector<double> paired, rates;
  for (int s = a.warmup; s < a.warmup + a.steps; ++s) {
    const auto t0 = std::chrono::steady_clock::now();
    loss = train_step(s);
    const double st = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    secs += st;
    rates.push_back(ops::matmul_rate_gflops(dtype, 0.1));
    paired.push_back(model.flops_per_token() * static_cast<double>(B * T) / st / (rates.back() * 1e9));
  }
  std::sort(paired.begin(), paired.end());
  std::sort(rates.begin(), rates.end());
  const double mfu_paired = paired[paired.size() / 2];
  const double tps = static_cast<double>(B * T * a.steps) / secs;
  const double mfu = model.flops_per_token() * tps / peak;
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  const double rss_mb = ru.ru_maxrss / 1024.0, alloc_mb = alloc.peak_bytes() / (1024.0 * 1024.0);
  std::printf(
      "{\"impl\": \"cmoe\", \"variant\": \"%s\", \"precision\": \"%s\", \"threads\": %d, \"tokens_per_s\": %.1f, "
      "\"step_s\": %.4f, \"mfu\": %.4f, \"peak_gflops\": %.1f, \"flops_per_token\": %.4g, \"alloc_peak_mb\": %.1f, "
      "\"max_rss_mb\": %.1f, \"loss\": %.4f, \"steps\": %d, \"mfu_paired\": %.4f, "
      "\"paired_peak_gflops_min\": %.1f, \"paired_peak_gflops_max\": %.1f}\n",
      a.variant.c_str(), a.precision.c_str(), omp_get_max_threads(), tps, secs / a.steps, mfu, peak / 1e9,
      model.flops_per_token(), alloc_mb, rss_mb, loss, a.steps, mfu_paired, rates.front(), rates.back());
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
