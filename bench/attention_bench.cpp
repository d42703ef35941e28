// attention_bench.cpp — throughput of the fused CPU attention and chunked cross-entropy.
//
// GFLOP/s counts the products each kernel executes, as a rate over real time:
//   attention forward   2 * B*H*T*T*Dh   (S = Q K^T and O = P V, each 2*T*T*Dh, halved by the
//                                         causal mask)
//   attention backward  5 * B*H*T*T*Dh   (S recomputed, dV, dP, dQ, dK: 5 causal products)
//   so forward+backward 7 * B*H*T*T*Dh   (the FlashAttention-2 convention: bwd = 2.5 x fwd)
//   cross-entropy fwd+bwd 8 * N*V*D      (forward logits; backward recomputes the logits, then
//                                         dh = dlogits w and dw += dlogits^T h)
// Shapes: cpu-small (B=8, T=256, H=8, Dh=32), a long-context head set (B=1, T=2048, H=8,
// Dh=64), and the LM head at N=2048 tokens, D=256, V=8192 (f32 and bf16 compute).
#include <benchmark/benchmark.h>

#include <cmath>
#include <vector>

#include "core/ops/attention.h"
#include "core/ops/cross_entropy.h"
#include "core/rng.h"

namespace cmoe {
namespace {

Tensor random_input(const Shape& shape, uint64_t stream, float std) {
  Tensor t = Tensor::empty(shape, DType::kF32);
  rng_fill_normal(t, 0.0f, std, /*seed=*/11, stream);
  return t;
}

void report(benchmark::State& state, double flops_per_iter) {
  state.counters["GFLOP/s"] = benchmark::Counter(
      flops_per_iter * 1e-9 * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}

struct AttentionCase {
  Tensor q, k, v, out, lse, dout, dq, dk, dv;
  float scale;
  explicit AttentionCase(const benchmark::State& state) {
    const int64_t B = state.range(0), T = state.range(1), H = state.range(2), Dh = state.range(3);
    const Shape s{B, T, H, Dh};
    q = random_input(s, 1, 1.0f);
    k = random_input(s, 2, 1.0f);
    v = random_input(s, 3, 1.0f);
    dout = random_input(s, 4, 1.0f);
    out = Tensor::empty(s, DType::kF32);
    lse = Tensor::empty({B, H, T}, DType::kF32);
    dq = Tensor::empty(s, DType::kF32);
    dk = Tensor::empty(s, DType::kF32);
    dv = Tensor::empty(s, DType::kF32);
    scale = 1.0f / std::sqrt(static_cast<float>(Dh));
  }
  double causal_product_flops(const benchmark::State& state) const {
    const double B = state.range(0), T = state.range(1), H = state.range(2), Dh = state.range(3);
    return B * H * T * T * Dh;  // one causal (T x T x Dh) product: 2*T*T*Dh / 2
  }
};

// args: B, T, H, Dh
void BM_AttentionForward(benchmark::State& state) {
  AttentionCase c(state);
  for (auto _ : state) {
    ops::attention_forward(c.out, c.lse, c.q, c.k, c.v, c.scale);
    benchmark::DoNotOptimize(c.out.raw_data());
  }
  report(state, 2.0 * c.causal_product_flops(state));
}

void BM_AttentionForwardBackward(benchmark::State& state) {
  AttentionCase c(state);
  for (auto _ : state) {
    ops::attention_forward(c.out, c.lse, c.q, c.k, c.v, c.scale);
    ops::attention_backward(c.dq, c.dk, c.dv, c.dout, c.q, c.k, c.v, c.out, c.lse, c.scale);
    benchmark::DoNotOptimize(c.dq.raw_data());
  }
  report(state, 7.0 * c.causal_product_flops(state));
}

void attention_shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"B", "T", "H", "Dh"});
  b->Args({8, 256, 8, 32});   // cpu-small
  b->Args({1, 2048, 8, 64});  // long context
}
BENCHMARK(BM_AttentionForward)->Apply(attention_shapes)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_AttentionForwardBackward)->Apply(attention_shapes)->UseRealTime()->Unit(benchmark::kMillisecond);

// args: N, D, V, bf16 (0/1), chunk
void BM_CrossEntropyForwardBackward(benchmark::State& state) {
  const int64_t N = state.range(0), D = state.range(1), V = state.range(2), chunk = state.range(4);
  const DType dt = state.range(3) ? DType::kBF16 : DType::kF32;
  Tensor h = random_input({N, D}, 5, 1.0f), w = random_input({V, D}, 6, 0.05f);
  std::vector<int32_t> t(static_cast<size_t>(N));
  for (int64_t i = 0; i < N; ++i) t[i] = static_cast<int32_t>((i * 2654435761u) % V);
  Tensor targets = Tensor::from_ints({N}, t);
  Tensor loss = Tensor::empty(Shape{}, DType::kF32), lse = Tensor::empty({N}, DType::kF32);
  Tensor dh = Tensor::empty({N, D}, DType::kF32), dw = Tensor::zeros({V, D}, DType::kF32);
  Tensor dloss = Tensor::full(Shape{}, 1.0f / static_cast<float>(N));
  for (auto _ : state) {
    ops::cross_entropy_forward(loss, lse, h, w, targets, chunk, dt);
    ops::cross_entropy_backward(dh, dw, dloss, h, w, targets, lse, chunk, dt);
    benchmark::DoNotOptimize(dw.raw_data());
  }
  report(state, 8.0 * static_cast<double>(N) * V * D);
  state.SetLabel(dtype_name(dt));
}
BENCHMARK(BM_CrossEntropyForwardBackward)
    ->ArgNames({"N", "D", "V", "bf16", "chunk"})
    ->Args({2048, 256, 8192, 0, 256})
    ->Args({2048, 256, 8192, 1, 256})
    ->Args({2048, 256, 8192, 0, 1024})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace cmoe

BENCHMARK_MAIN();
