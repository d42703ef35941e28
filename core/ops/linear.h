// linear.h — linear layers in f32 or bf16 compute with f32 master weights and f32 accumulation.
//
// Weights are stored PyTorch-style, (out_features, in_features). With compute dtype kBF16 the
// inputs and weights are rounded to bf16 for the matmul only; outputs and gradients stay f32.
#pragma once

#include <span>

#include "core/tensor.h"

namespace cmoe::ops {

// t unchanged when it already has the compute dtype; else its bf16 rounding (t must be f32).
Tensor to_compute(const Tensor& t, DType compute_dtype);

// x and w below are f32, or already in the compute dtype (see to_compute).
// out = x @ w^T          x: (N, K) f32; w: (M, K) f32; out: (N, M) f32
void linear_forward(Tensor& out, const Tensor& x, const Tensor& w, DType compute_dtype);
// dx = dout @ w (overwritten); dw = dout^T @ x, added to dw's contents when accumulate_dw (else
// dw is overwritten and may be uninitialised); each skipped if undefined
void linear_backward(Tensor& dx, Tensor& dw, const Tensor& dout, const Tensor& x, const Tensor& w,
                     DType compute_dtype, bool accumulate_dw);

// Expert linear over row segments: out[seg g] = x[seg g] @ w[g]^T
// x: (R, K) f32; w: (G, M, K) f32; out: (R, M) f32; offsets: G+1 row offsets
void grouped_linear_forward(Tensor& out, const Tensor& x, const Tensor& w,
                            std::span<const int64_t> offsets, DType compute_dtype);
// dx (R, K) overwritten; dw (G, M, K) accumulated when accumulate_dw, else overwritten (an
// expert with no rows gets zeros); each skipped if undefined
void grouped_linear_backward(Tensor& dx, Tensor& dw, const Tensor& dout, const Tensor& x,
                             const Tensor& w, std::span<const int64_t> offsets,
                             DType compute_dtype, bool accumulate_dw);

}  // namespace cmoe::ops
