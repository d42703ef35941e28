// matmul_bench.cpp — oneDNN matmul throughput at cmoe's training shapes, f32 and bf16.
//
// Every case reports GFLOP/s (2*M*N*K per product, as a rate over real time) and frac_peak,
// its throughput over the dtype's peak measured first in this same run by
// ops::matmul_peak_gflops (best square product over ~0.3 s), so the fraction is free of
// clock-speed or machine assumptions. Some shapes exceed 1.0 slightly. The machine is shared:
// run it alone (other processes on the 2 cores halve every number).
// Cases: dense products as linear layers issue them (forward x @ w^T, backward dout @ w and
// dout^T @ x), the LM head, one large square product, and a 16-expert grouped matmul with
// uneven segments against one dense matmul of the same total size.
#include <benchmark/benchmark.h>

#include <cstdio>
#include <vector>

#include "core/ops/linear.h"
#include "core/ops/matmul.h"
#include "core/rng.h"

namespace cmoe {
namespace {

DType dtype_arg(int64_t v) { return v ? DType::kBF16 : DType::kF32; }

Tensor random_operand(const Shape& shape, DType dt, uint64_t stream) {
  Tensor t = Tensor::empty(shape, DType::kF32);
  rng_fill_normal(t, 0.0f, 1.0f, /*seed=*/7, stream);
  return t.to_dtype(dt);
}

// flops per iteration -> GFLOP/s and the fraction of this dtype's measured peak.
void report(benchmark::State& state, double flops, DType dt, int64_t primitives_before) {
  const double gflop = flops * 1e-9 * static_cast<double>(state.iterations());
  state.counters["GFLOP/s"] = benchmark::Counter(gflop, benchmark::Counter::kIsRate);
  state.counters["frac_peak"] =
      benchmark::Counter(gflop / ops::matmul_peak_gflops(dt), benchmark::Counter::kIsRate);
  // Primitives created inside the timed loop (after one warm-up call): must be 0.
  state.counters["new_prims"] =
      static_cast<double>(ops::matmul_primitive_count() - primitives_before);
  state.SetLabel(dtype_name(dt));
}

// args: M, N, K, dtype (0 f32, 1 bf16), trans_a, trans_b
void BM_Matmul(benchmark::State& state) {
  const int64_t m = state.range(0), n = state.range(1), k = state.range(2);
  const DType dt = dtype_arg(state.range(3));
  const bool ta = state.range(4), tb = state.range(5);
  Tensor a = random_operand(ta ? Shape{k, m} : Shape{m, k}, dt, 1);
  Tensor b = random_operand(tb ? Shape{n, k} : Shape{k, n}, dt, 2);
  Tensor c = Tensor::empty({m, n}, DType::kF32);
  ops::matmul(c, a, b, ta, tb);
  const int64_t prims = ops::matmul_primitive_count();
  for (auto _ : state) {
    ops::matmul(c, a, b, ta, tb);
    benchmark::DoNotOptimize(c.raw_data());
  }
  report(state, 2.0 * m * n * k, dt, prims);
}

void matmul_shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"M", "N", "K", "bf16", "tA", "tB"});
  for (int64_t dt : {0, 1}) {
    b->Args({4096, 4096, 4096, dt, 0, 0});  // large square: the peak shape
    // d_model 256 <-> d_ff 1024 linears over 2048 tokens: forward x @ w^T ...
    b->Args({2048, 1024, 256, dt, 0, 1});
    b->Args({2048, 256, 1024, dt, 0, 1});
    // ... and backward of the first: dx = dout @ w, dw = dout^T @ x
    b->Args({2048, 256, 1024, dt, 0, 0});
    b->Args({1024, 256, 2048, dt, 1, 0});
    b->Args({2048, 8192, 256, dt, 0, 1});  // LM head, vocab 8192
  }
}
BENCHMARK(BM_Matmul)->Apply(matmul_shapes)->UseRealTime()->Unit(benchmark::kMillisecond);

// 16 experts, 4096 routed rows (2048 tokens, top-2), deliberately uneven: from 32 to 704 rows.
std::vector<int64_t> uneven_offsets() {
  const int64_t sizes[16] = {704, 512, 448, 384, 320, 288, 256, 256,
                             224, 192, 160, 128, 96, 64, 32, 32};
  std::vector<int64_t> off = {0};
  for (int64_t s : sizes) off.push_back(off.back() + s);
  return off;  // off.back() == 4096
}

// args: N (out features), K (in features), dtype, grad_w (0: forward x_g @ w_g^T; 1: dw_g)
void BM_GroupedMatmul(benchmark::State& state) {
  const int64_t n = state.range(0), k = state.range(1);
  const DType dt = dtype_arg(state.range(2));
  const bool grad_w = state.range(3);
  const std::vector<int64_t> off = uneven_offsets();
  const int64_t rows = off.back(), groups = static_cast<int64_t>(off.size()) - 1;
  Tensor a = random_operand({rows, k}, dt, 1);
  Tensor w = random_operand({groups, n, k}, dt, 2);  // (G, N, K): PyTorch (out, in) layout
  Tensor dc = random_operand({rows, n}, dt, 3);
  Tensor c = Tensor::empty({rows, n}, DType::kF32);
  Tensor dw = Tensor::zeros({groups, n, k}, DType::kF32);
  auto step = [&] {
    if (grad_w) {
      ops::grouped_matmul_grad_w(dw, a, dc, off, /*trans_w=*/true, /*accumulate=*/true);
    } else {
      ops::grouped_matmul(c, a, w, off, /*trans_w=*/true);
    }
  };
  step();
  const int64_t prims = ops::matmul_primitive_count();
  for (auto _ : state) step();
  report(state, 2.0 * rows * n * k, dt, prims);
}

// The same total work as one dense product: (4096, K) @ (N, K)^T, or dw (N, K) += dc^T @ a.
void BM_GroupedDenseEquivalent(benchmark::State& state) {
  const int64_t n = state.range(0), k = state.range(1);
  const DType dt = dtype_arg(state.range(2));
  const bool grad_w = state.range(3);
  const int64_t rows = uneven_offsets().back();
  Tensor a = random_operand({rows, k}, dt, 1);
  Tensor w = random_operand({n, k}, dt, 2);
  Tensor dc = random_operand({rows, n}, dt, 3);
  Tensor c = Tensor::empty({rows, n}, DType::kF32);
  Tensor dw = Tensor::zeros({n, k}, DType::kF32);
  auto step = [&] {
    if (grad_w) {
      ops::matmul(dw, dc, a, true, false, 1.0f, 1.0f);
    } else {
      ops::matmul(c, a, w, false, true);
    }
  };
  step();
  const int64_t prims = ops::matmul_primitive_count();
  for (auto _ : state) step();
  report(state, 2.0 * rows * n * k, dt, prims);
}

void grouped_shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"N", "K", "bf16", "gradW"});
  for (int64_t dt : {0, 1})
    for (int64_t gw : {0, 1}) {
      b->Args({1024, 256, dt, gw});  // expert up projection
      b->Args({256, 1024, dt, gw});  // expert down projection
      b->Args({512, 256, dt, gw});   // cpu-small CartesianMoE sub-expert up projection
      b->Args({256, 512, dt, gw});   // and down projection
    }
}
BENCHMARK(BM_GroupedMatmul)->Apply(grouped_shapes)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_GroupedDenseEquivalent)
    ->Apply(grouped_shapes)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

// linear_forward with bf16 compute from f32 x and w: the matmul plus rounding both to bf16.
void BM_LinearForwardBf16(benchmark::State& state) {
  const int64_t rows = state.range(0), out = state.range(1), in = state.range(2);
  Tensor x = random_operand({rows, in}, DType::kF32, 1);    // (N, K)
  Tensor w = random_operand({out, in}, DType::kF32, 2);     // (M, K)
  Tensor y = Tensor::empty({rows, out}, DType::kF32);
  ops::linear_forward(y, x, w, DType::kBF16);
  const int64_t prims = ops::matmul_primitive_count();
  for (auto _ : state) ops::linear_forward(y, x, w, DType::kBF16);
  report(state, 2.0 * rows * out * in, DType::kBF16, prims);
}
BENCHMARK(BM_LinearForwardBf16)
    ->ArgNames({"N", "M", "K"})
    ->Args({2048, 1024, 256})
    ->Args({2048, 8192, 256})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace cmoe

int main(int argc, char** argv) {
  // Peaks first, on an otherwise idle process, so every case divides by the same numbers.
  const double peak_f32 = cmoe::ops::matmul_peak_gflops(cmoe::DType::kF32);
  const double peak_bf16 = cmoe::ops::matmul_peak_gflops(cmoe::DType::kBF16);
  std::printf("measured matmul peak: f32 %.1f GFLOP/s, bf16 %.1f GFLOP/s\n", peak_f32,
              peak_bf16);
  benchmark::AddCustomContext("peak_f32_gflops", std::to_string(peak_f32));
  benchmark::AddCustomContext("peak_bf16_gflops", std::to_string(peak_bf16));
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
