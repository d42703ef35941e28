// rope.h — rotary position embedding, LLaMA / Hugging Face "rotate_half" convention.
//
// For head dim Dh and pair index i < Dh/2, position p:
//   f_i = theta^(-2i/Dh),  c = cos(p f_i),  s = sin(p f_i)
//   out[i]        = x[i] * c - x[i + Dh/2] * s
//   out[i + Dh/2] = x[i + Dh/2] * c + x[i] * s
#pragma once

#include "core/tensor.h"

namespace cmoe::ops {

// x, out: (B, T, H, Dh) f32; position of token t is pos0 + t. out may alias x.
void rope_forward(Tensor& out, const Tensor& x, float theta, int64_t pos0);
// The inverse rotation: dx = R(-p) dout. dx may alias dout.
void rope_backward(Tensor& dx, const Tensor& dout, float theta, int64_t pos0);

}  // namespace cmoe::ops
