// attention.h — fused, tiled causal self-attention (FlashAttention-2 style) on CPU.
//
//   out[b,t,h,:] = sum_{s<=t} softmax_s(scale * q[b,t,h,:] . k[b,s,h,:]) v[b,s,h,:]
// Memory is O(T) per head: the (T x T) score matrix is never materialised; forward keeps the
// row log-sum-exp and backward recomputes scores tile by tile.
#pragma once

#include "core/tensor.h"

namespace cmoe::ops {

// q, k, v, out: (B, T, H, Dh) f32; lse: (B, H, T) f32 (saved for backward)
void attention_forward(Tensor& out, Tensor& lse, const Tensor& q, const Tensor& k, const Tensor& v,
                       float scale);
// dq, dk, dv: (B, T, H, Dh) f32, overwritten
void attention_backward(Tensor& dq, Tensor& dk, Tensor& dv, const Tensor& dout, const Tensor& q,
                        const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse,
                        float scale);

}  // namespace cmoe::ops
