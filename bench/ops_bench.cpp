// ops_bench.cpp — throughput of the memory-bound CPU kernels (rmsnorm, swiglu, softmax, topk,
// rope, embedding, gather/scatter rows) at cpu-small training shapes: 8 x 256 = 2048 tokens,
// D = 256, F = 512 / 1024, E = 16 experts, top-2 routing, Dh = 64.
//
// bytes_per_second counts the bytes each kernel must move at minimum: every input read once
// and every output written once (a read-modify-write accumulator counts twice). A same-size
// memcpy is the reference for what the memory system gives on this machine.
#include <cstring>
#include <vector>

#include "benchmark/benchmark.h"
#include "core/profiler.h"
#include "core/ops/embedding.h"
#include "core/ops/permute.h"
#include "core/ops/rmsnorm.h"
#include "core/ops/rope.h"
#include "core/ops/softmax.h"
#include "core/ops/swiglu.h"
#include "core/rng.h"

namespace cmoe {
namespace {

constexpr int64_t kTokens = 8 * 256;  // rows
constexpr int64_t kD = 256;           // model dim
constexpr int64_t kE = 16;            // experts
constexpr int64_t kTopK = 2;
constexpr int64_t kHeads = 4, kHeadDim = 64;
constexpr int64_t kVocab = 32768;
constexpr int64_t kF32 = 4;

Tensor rnd(const Shape& s, uint64_t stream) {
  Tensor t = Tensor::empty(s, DType::kF32);
  rng_fill_normal(t, 0.0f, 1.0f, 1, stream);
  return t;
}

Tensor rnd_ids(int64_t n, int64_t range, uint64_t stream) {
  std::vector<int32_t> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[i] = static_cast<int32_t>(rng_u32(1, stream, i) % range);
  return Tensor::from_ints({n}, v);
}

// Token-major dispatch indices: copy m = t * k + j comes from token t (what a router's
// sorted-by-expert permutation inverts); shuffled so gathers are not sequential.
Tensor dispatch_ids(int64_t tokens, int64_t k) {
  std::vector<int32_t> v(static_cast<size_t>(tokens * k));
  for (int64_t m = 0; m < tokens * k; ++m) v[m] = static_cast<int32_t>(m / k);
  for (int64_t m = tokens * k - 1; m > 0; --m) std::swap(v[m], v[rng_u32(1, 99, m) % (m + 1)]);
  return Tensor::from_ints({tokens * k}, v);
}

void set_bytes(benchmark::State& state, int64_t bytes) {
  state.SetBytesProcessed(state.iterations() * bytes);
}

void BM_memcpy(benchmark::State& state) {
  const int64_t n = state.range(0) / kF32;
  Tensor a = rnd({n}, 1), b = Tensor::empty({n}, DType::kF32);
  for (auto _ : state) {
    std::memcpy(b.raw_data(), a.raw_data(), a.nbytes());
    benchmark::ClobberMemory();
  }
  set_bytes(state, 2 * n * kF32);
}
BENCHMARK(BM_memcpy)->Arg(2 << 20)->Arg(8 << 20)->UseRealTime();

void BM_rmsnorm_forward(benchmark::State& state) {
  Tensor x = rnd({kTokens, kD}, 2), w = rnd({kD}, 3), out = Tensor::empty({kTokens, kD}, DType::kF32);
  Tensor rstd = Tensor::empty({kTokens}, DType::kF32);
  for (auto _ : state) ops::rmsnorm_forward(out, rstd, x, w, 1e-5f);
  set_bytes(state, 2 * kTokens * kD * kF32);
}
BENCHMARK(BM_rmsnorm_forward)->UseRealTime();

void BM_rmsnorm_backward(benchmark::State& state) {
  Tensor x = rnd({kTokens, kD}, 2), w = rnd({kD}, 3), g = rnd({kTokens, kD}, 4);
  Tensor out = Tensor::empty({kTokens, kD}, DType::kF32), rstd = Tensor::empty({kTokens}, DType::kF32);
  ops::rmsnorm_forward(out, rstd, x, w, 1e-5f);
  Tensor dx = Tensor::empty({kTokens, kD}, DType::kF32), dw = Tensor::zeros({kD}, DType::kF32);
  for (auto _ : state) ops::rmsnorm_backward(dx, dw, g, x, w, rstd);
  set_bytes(state, 3 * kTokens * kD * kF32);  // dout, x in; dx out
}
BENCHMARK(BM_rmsnorm_backward)->UseRealTime();

// Output modes (second arg): 0 f32 (f32 training); 1 f32, then rounded to bf16 by a second
// pass (bf16 training before the rounding moved into swiglu); 2 bf16 written directly (bf16
// training now). Modes 1 and 2 count the same bytes (the bf16 result), so their rates compare.
Tensor swiglu_out(int64_t rows, int64_t f, int64_t mode) {
  return Tensor::empty({rows, f}, mode == 2 ? DType::kBF16 : DType::kF32);
}
void round_for_mode(const Tensor& t, int64_t mode) {
  if (mode == 1) benchmark::DoNotOptimize(t.to_dtype(DType::kBF16).raw_data());
}

void BM_swiglu_forward(benchmark::State& state) {
  const int64_t f = state.range(0), mode = state.range(1);
  Tensor g = rnd({kTokens, f}, 5), u = rnd({kTokens, f}, 6), out = swiglu_out(kTokens, f, mode);
  for (auto _ : state) {
    ops::swiglu_forward(out, g, u);
    round_for_mode(out, mode);
  }
  set_bytes(state, kTokens * f * (2 * kF32 + (mode == 0 ? kF32 : 2)));
}
BENCHMARK(BM_swiglu_forward)->ArgsProduct({{512, 1024}, {0, 1, 2}})->UseRealTime();

void BM_swiglu_backward(benchmark::State& state) {
  const int64_t f = state.range(0), mode = state.range(1);
  Tensor g = rnd({kTokens, f}, 5), u = rnd({kTokens, f}, 6), d = rnd({kTokens, f}, 7);
  Tensor dg = swiglu_out(kTokens, f, mode), du = swiglu_out(kTokens, f, mode);
  for (auto _ : state) {
    ops::swiglu_backward(dg, du, d, g, u);
    round_for_mode(dg, mode);
    round_for_mode(du, mode);
  }
  set_bytes(state, kTokens * f * (3 * kF32 + 2 * (mode == 0 ? kF32 : 2)));
}
BENCHMARK(BM_swiglu_backward)->ArgsProduct({{512, 1024}, {0, 1, 2}})->UseRealTime();

void BM_softmax_forward(benchmark::State& state) {
  Tensor x = rnd({kTokens, kE}, 8), y = Tensor::empty({kTokens, kE}, DType::kF32);
  for (auto _ : state) ops::softmax_forward(y, x);
  set_bytes(state, 2 * kTokens * kE * kF32);
}
BENCHMARK(BM_softmax_forward)->UseRealTime();

void BM_softmax_backward(benchmark::State& state) {
  Tensor x = rnd({kTokens, kE}, 8), y = Tensor::empty({kTokens, kE}, DType::kF32), g = rnd({kTokens, kE}, 9);
  ops::softmax_forward(y, x);
  Tensor dx = Tensor::empty({kTokens, kE}, DType::kF32);
  for (auto _ : state) ops::softmax_backward(dx, g, y);
  set_bytes(state, 3 * kTokens * kE * kF32);
}
BENCHMARK(BM_softmax_backward)->UseRealTime();

void BM_topk_forward(benchmark::State& state) {
  Tensor x = rnd({kTokens, kE}, 10);
  Tensor v = Tensor::empty({kTokens, kTopK}, DType::kF32), i = Tensor::empty({kTokens, kTopK}, DType::kI32);
  for (auto _ : state) ops::topk_forward(v, i, x, kTopK, Tensor());
  set_bytes(state, kTokens * (kE + 2 * kTopK) * kF32);
}
BENCHMARK(BM_topk_forward)->UseRealTime();

void BM_rope_forward(benchmark::State& state) {
  Tensor x = rnd({8, 256, kHeads, kHeadDim}, 11), out = Tensor::empty(x.shape(), DType::kF32);
  for (auto _ : state) ops::rope_forward(out, x, 10000.0f, 0);
  set_bytes(state, 2 * x.numel() * kF32);
}
BENCHMARK(BM_rope_forward)->UseRealTime();

void BM_embedding_forward(benchmark::State& state) {
  Tensor table = rnd({kVocab, kD}, 12), ids = rnd_ids(kTokens, kVocab, 13);
  Tensor out = Tensor::empty({kTokens, kD}, DType::kF32);
  for (auto _ : state) ops::embedding_forward(out, table, ids);
  set_bytes(state, 2 * kTokens * kD * kF32);
}
BENCHMARK(BM_embedding_forward)->UseRealTime();

void BM_embedding_backward(benchmark::State& state) {
  Tensor dtable = Tensor::zeros({kVocab, kD}, DType::kF32), ids = rnd_ids(kTokens, kVocab, 13);
  Tensor g = rnd({kTokens, kD}, 14);
  for (auto _ : state) ops::embedding_backward(dtable, g, ids);
  set_bytes(state, 3 * kTokens * kD * kF32);  // dout in; table rows read and written
}
BENCHMARK(BM_embedding_backward)->UseRealTime();

void BM_gather_rows_forward(benchmark::State& state) {
  Tensor x = rnd({kTokens, kD}, 15), idx = dispatch_ids(kTokens, kTopK);
  Tensor out = Tensor::empty({kTokens * kTopK, kD}, DType::kF32);
  for (auto _ : state) ops::gather_rows_forward(out, x, idx);
  set_bytes(state, 2 * kTokens * kTopK * kD * kF32);
}
BENCHMARK(BM_gather_rows_forward)->UseRealTime();

void BM_gather_rows_backward(benchmark::State& state) {
  Tensor g = rnd({kTokens * kTopK, kD}, 16), idx = dispatch_ids(kTokens, kTopK);
  Tensor dx = Tensor::zeros({kTokens, kD}, DType::kF32);
  for (auto _ : state) ops::gather_rows_backward(dx, g, idx);
  set_bytes(state, (kTokens * kTopK + 2 * kTokens) * kD * kF32);
}
BENCHMARK(BM_gather_rows_backward)->UseRealTime();

void BM_scatter_add_rows_forward(benchmark::State& state) {
  Tensor y = rnd({kTokens * kTopK, kD}, 17), idx = dispatch_ids(kTokens, kTopK);
  Tensor w = rnd({kTokens * kTopK}, 18), out = Tensor::zeros({kTokens, kD}, DType::kF32);
  for (auto _ : state) ops::scatter_add_rows_forward(out, y, idx, w);
  set_bytes(state, (kTokens * kTopK + 2 * kTokens) * kD * kF32);
}
BENCHMARK(BM_scatter_add_rows_forward)->UseRealTime();

void BM_scatter_add_rows_backward(benchmark::State& state) {
  Tensor y = rnd({kTokens * kTopK, kD}, 17), idx = dispatch_ids(kTokens, kTopK);
  Tensor w = rnd({kTokens * kTopK}, 18), g = rnd({kTokens, kD}, 19);
  Tensor dy = Tensor::empty({kTokens * kTopK, kD}, DType::kF32), dw = Tensor::empty({kTokens * kTopK}, DType::kF32);
  for (auto _ : state) ops::scatter_add_rows_backward(dy, dw, g, y, idx, w);
  set_bytes(state, 3 * kTokens * kTopK * kD * kF32);  // dout rows gathered, y in, dy out
}
BENCHMARK(BM_scatter_add_rows_backward)->UseRealTime();

// The profiler's cost per span (core/profiler.h): off (no capture: one relaxed load and a
// branch), an always-timed category off (two clock reads), and on (recorded). A training step
// of cpu-small opens ~1,500 spans, so the off cost per step is the first figure times 1,500.
void BM_profiler_span_off(benchmark::State& state) {
  for (auto _ : state) {
    prof::Span s("linear", prof::Cat::kOp);
    benchmark::DoNotOptimize(&s);
  }
}
BENCHMARK(BM_profiler_span_off);
void BM_profiler_comm_span_off(benchmark::State& state) {
  for (auto _ : state) {
    prof::Span s("all_reduce", prof::Cat::kComm);
    benchmark::DoNotOptimize(&s);
  }
}
BENCHMARK(BM_profiler_comm_span_off);
void BM_profiler_span_on(benchmark::State& state) {
  prof::start();
  int64_t n = 0;
  for (auto _ : state) {
    prof::Span s("linear", prof::Cat::kOp);
    benchmark::DoNotOptimize(&s);
    if (++n % 100000 == 0) prof::start();  // keep the event buffer small
  }
  prof::stop();
}
BENCHMARK(BM_profiler_span_on);

}  // namespace
}  // namespace cmoe

BENCHMARK_MAIN();
