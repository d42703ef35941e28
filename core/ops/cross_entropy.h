// cross_entropy.h — cross-entropy fused with the LM head, chunked over rows so the (N x V)
// logits are never all live: at most (chunk x V) floats exist at a time.
//
//   logits[n, :] = h[n, :] @ w^T;  loss = sum_{n: t[n] >= 0} (lse(logits[n]) - logits[n, t[n]])
// Rows whose target is negative are ignored (padding). The loss is a sum; callers divide.
#pragma once

#include "core/tensor.h"

namespace cmoe::ops {

// loss: () f32; lse: (N) f32 saved for backward; h: (N, D) f32; w: (V, D) f32; targets: (N) i32.
// compute_dtype kBF16 runs the logits matmul in bf16 (f32 accumulation, f32 softmax).
void cross_entropy_forward(Tensor& loss, Tensor& lse, const Tensor& h, const Tensor& w,
                           const Tensor& targets, int64_t chunk, DType compute_dtype);
// dh (N, D) overwritten; dw (V, D) accumulated; dloss: () f32 (scale of the summed loss).
void cross_entropy_backward(Tensor& dh, Tensor& dw, const Tensor& dloss, const Tensor& h,
                            const Tensor& w, const Tensor& targets, const Tensor& lse,
                            int64_t chunk, DType compute_dtype);
// The forward and, for a dloss known before the backward, the backward in one pass: each chunk's
// logits are computed once instead of twice. Equal bit for bit to cross_entropy_forward then
// cross_entropy_backward(dloss) (dh and dw zeroed first); dh or dw undefined: not computed.
void cross_entropy_forward_backward(Tensor& loss, Tensor& lse, Tensor& dh, Tensor& dw, float dloss,
                                    const Tensor& h, const Tensor& w, const Tensor& targets,
                                    int64_t chunk, DType compute_dtype);

}  // namespace cmoe::ops
