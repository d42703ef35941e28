// matmul.h — dense and grouped matrix multiplication on CPU (oneDNN), f32 accumulation.
//
// All tensors are 2-D views (leading dims flattened by the caller) of CPU storage. A and B are
// both f32 or both bf16; C is always f32. Primitives are cached by (shapes, dtypes, flags), so
// steady-state training creates no new oneDNN primitives.
#pragma once

#include <cstdint>
#include <span>

#include "core/tensor.h"

namespace cmoe::ops {

// c = alpha * op(a) @ op(b) + beta * c, op(x) = x^T when the flag is set.
// a: (M, K) or (K, M) if trans_a; b: (K, N) or (N, K) if trans_b; c: (M, N) f32.
void matmul(Tensor& c, const Tensor& a, const Tensor& b, bool trans_a, bool trans_b,
            float alpha = 1.0f, float beta = 0.0f);

// Grouped matmul over contiguous row segments, one segment per expert:
//   c[offsets[g]:offsets[g+1]] = a[offsets[g]:offsets[g+1]] @ op(w[g])
// a: (R, K); w: (G, K, N), or (G, N, K) if trans_w; c: (R, N) f32; offsets: G+1 entries,
// offsets[0] == 0, offsets[G] == R, non-decreasing. Empty segments are skipped.
void grouped_matmul(Tensor& c, const Tensor& a, const Tensor& w, std::span<const int64_t> offsets,
                    bool trans_w);

// Weight gradient of grouped_matmul:
//   dw[g] (+)= a_g^T @ dc_g        (K, N)   when !trans_w
//   dw[g] (+)= dc_g^T @ a_g        (N, K)   when trans_w
// dw: f32 (G, K, N) / (G, N, K); accumulate adds into dw instead of overwriting it.
void grouped_matmul_grad_w(Tensor& dw, const Tensor& a, const Tensor& dc,
                           std::span<const int64_t> offsets, bool trans_w, bool accumulate);

// Number of oneDNN matmul primitives created so far (the cache's size): tests and benches use
// it to show that steady-state steps create none.
int64_t matmul_primitive_count();

// The CPU's measured dense matmul throughput for A/B of `dtype` (f32 or bf16), in GFLOP/s:
// the best single square matmul (1024^3 on 2 threads, growing with the thread count) over
// ~0.3 s of repeats, measured on the first call and cached for the process. MFU and the
// benches' "fraction of peak" are reported against it.
double matmul_peak_gflops(DType dtype);
// The same measurement taken now over `seconds`, not cached: for pairing a rate with work
// measured next to it on a machine whose speed drifts (benches).
double matmul_rate_gflops(DType dtype, double seconds);

// The machine's measured memory bandwidth in GB/s (bytes read + written per second): the best
// of repeated parallel copies of a 128 MiB array, cached after the first call (~0.3 s).
double memory_bandwidth_gbs();

}  // namespace cmoe::ops
