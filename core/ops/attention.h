// attention.h — fused, tiled causal self-attention (FlashAttention-2 style) on CPU.
//
//   out[b,t,h,:] = sum_{s<=t} softmax_s(scale * q[b,t,h,:] . k[b,s,h,:]) v[b,s,h,:]
// Memory is O(T) per head: the (T x T) score matrix is never materialised; forward keeps the
// row log-sum-exp and backward recomputes scores tile by tile.
// attention_kv_forward is the inference form over a key/value cache (queries at later positions
// than the first key), forward only.
#pragma once

#include "core/tensor.h"

namespace cmoe::ops {

// q, k, v, out: (B, T, H, Dh) f32; lse: (B, H, T) f32 (saved for backward).
// compute_dtype: a backend may run the score and value products with bf16 inputs when it is
// kBF16 (f32 accumulation and softmax; the CUDA backend does, on tensor cores); this CPU kernel
// computes in f32 whatever it says.
void attention_forward(Tensor& out, Tensor& lse, const Tensor& q, const Tensor& k, const Tensor& v,
                       float scale, DType compute_dtype = DType::kF32);
// dq, dk, dv: (B, T, H, Dh) f32, overwritten
void attention_backward(Tensor& dq, Tensor& dk, Tensor& dv, const Tensor& dout, const Tensor& q,
                        const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse,
                        float scale, DType compute_dtype = DType::kF32);

// Inference over a key/value cache (generation): q (B, Tq, H, Dh) holds the queries of positions
// pos0 .. pos0 + Tq - 1; k, v (B, Tk, H, Dh), Tk >= pos0 + Tq, hold the keys (after RoPE) and
// values of positions 0 .. Tk - 1 (rows past pos0 + Tq - 1 are not read). out (B, Tq, H, Dh):
//   out[b,t,h,:] = sum_{s <= pos0+t} softmax_s(scale * q[b,t,h,:] . k[b,s,h,:]) v[b,s,h,:]
// With pos0 = 0 and Tk = Tq it equals attention_forward's out (to f32 rounding).
void attention_kv_forward(Tensor& out, const Tensor& q, const Tensor& k, const Tensor& v, float scale,
                          int64_t pos0);

}  // namespace cmoe::ops
