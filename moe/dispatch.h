// dispatch.h — dropless MoE dispatch on one rank: sort token copies by expert, run every
// expert as one grouped matmul per weight, and scatter the weighted results back.
//
//   out[n] = sum_{j<k} w[n, j] * FFN_{idx[n, j]}(u[n]),  FFN_e(x) = W2_e (silu(W1_e x) * (W3_e x))
//
// Steps: a counting sort of the N*k (token, choice) pairs by expert gives each expert a
// contiguous segment; gather_rows builds the (N*k, d) expert input; grouped_linear runs W1, W3
// and W2 over the segments; scatter_add_rows adds each row, weighted, into its token. Every
// step is an autograd op, so backward mirrors it. With a capacity factor, pairs beyond an
// expert's capacity ceil(cf * N * k / E) are dropped in token order (GShard's rule).
#pragma once

#include <memory>
#include <span>
#include <vector>

#include "autograd/ops.h"

namespace cmoe {

struct ExpertWeights {
  ag::Var w1;  // (E, F, d) gate projection
  ag::Var w3;  // (E, F, d) up projection
  ag::Var w2;  // (E, d, F) down projection
};

// The sorted order of the (token, choice) pairs; pure integer bookkeeping.
struct DispatchPlan {
  int64_t num_tokens = 0, top_k = 0, num_experts = 0;
  std::vector<int64_t> counts;                  // (E) pairs kept per expert
  std::shared_ptr<std::vector<int64_t>> offsets;  // (E + 1) segment starts
  Tensor token_of_slot;                         // (M) i32: token of each sorted slot
  Tensor pair_of_slot;                          // (M) i32: n * k + j of each sorted slot
  int64_t dropped = 0;                          // pairs dropped by the capacity limit
};

// indices: (N, k) i32 expert ids in [0, E), or -1 for an empty slot (skipped).
// capacity_factor 0 = dropless. On a device the placement runs there (token_of_slot and
// pair_of_slot live beside indices); the segment sizes are host data (grouped GEMM problem sizes),
// taken from `counts` (each expert's pairs in indices, e.g. RouterOutput::local_counts) or, when
// empty, counted on the device and copied back.
DispatchPlan dispatch_plan(const Tensor& indices, int64_t num_experts, float capacity_factor = 0.0f,
                           std::span<const int64_t> counts = {});

// u: (N, d); weights: (N, k) routing weights (differentiable); returns (N, d).
ag::Var dispatch_experts(const ag::Var& u, const DispatchPlan& plan, const ag::Var& weights,
                         const ExpertWeights& experts, DType compute_dtype = DType::kF32);

// A dense SwiGLU FFN (shared experts, dense layers): x (N, d) -> (N, d); w1, w3: (F, d); w2: (d, F).
ag::Var swiglu_ffn(const ag::Var& x, const ag::Var& w1, const ag::Var& w3, const ag::Var& w2,
                   DType compute_dtype = DType::kF32);

}  // namespace cmoe
