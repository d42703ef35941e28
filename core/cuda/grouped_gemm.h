// grouped_gemm.h — the problem list of one grouped expert GEMM (host logic, unit-tested on the
// CPU in tests/cuda/grouped_gemm_test.cpp).
//
// An expert linear runs G row segments, segment g = rows [offsets[g], offsets[g + 1]) of x
// against expert g's weight w[g] (M, K). Its three products become one cuBLAS grouped call each
// (blas_grouped_matmul, row-major sizes per problem):
//   forward      out_g (R_g, M)  = x_g (R_g, K) @ w_g^T           m = R_g, n = M, k = K
//   grad input   dx_g (R_g, K)   = dout_g (R_g, M) @ w_g          m = R_g, n = K, k = M
//   grad weight  dw_g (M, K)    += dout_g^T (M, R_g) @ x_g        m = M,   n = K, k = R_g
// Empty segments (R_g = 0: an expert no token chose) are left out: they have no rows to write
// and add nothing to their weight's gradient. When the inner dimension is 0 (K = 0 forward, M = 0
// grad input) no problem is listed and the output must be zeroed instead (zero_output).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace cmoe::cuda {

enum class GroupedGemmKind { kForward, kGradInput, kGradWeight };

struct GroupedGemmPlan {
  std::vector<int64_t> group;     // the segment of each problem
  std::vector<int64_t> m, n, k;   // row-major sizes, all >= 1
  std::vector<const void*> a, b;  // operands (device addresses)
  std::vector<void*> c;           // outputs (f32)
  bool trans_a = false, trans_b = false;
  float beta = 0.0f;              // 1: accumulate (grad weight)
  bool zero_output = false;       // the output is all zeros and no problem writes it
  int64_t size() const { return static_cast<int64_t>(m.size()); }
};

// x, dout: the row operands (a: x for forward and grad weight's b, dout for the gradients) of
// `in_bytes` per element (2 for bf16, 4 for f32); w: (G, M, K) of in_bytes; out: f32.
//   kForward:    a = x, b = w, out = y (R, M)
//   kGradInput:  a = dout, b = w, out = dx (R, K)
//   kGradWeight: a = dout, b = x, out = dw (G, M, K)
// offsets: G + 1 non-decreasing row offsets from 0 (checked).
GroupedGemmPlan grouped_gemm_plan(GroupedGemmKind kind, std::span<const int64_t> offsets, int64_t M, int64_t K,
                                  const void* a, const void* b, void* out, int64_t in_bytes);

}  // namespace cmoe::cuda
