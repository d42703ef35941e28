// swiglu.h — SwiGLU gating (Shazeer 2020): out = silu(gate) * up, silu(z) = z * sigmoid(z).
#pragma once

#include "core/tensor.h"

namespace cmoe::ops {

// gate, up: (N, F) f32; out: (N, F) f32, or bf16 (the f32 result rounded to nearest even: the
// bits a following bf16 matmul would round it to)
void swiglu_forward(Tensor& out, const Tensor& gate, const Tensor& up);
// dgate = dout * up * silu'(gate); dup = dout * silu(gate); both (N, F), overwritten; either
// may be undefined. dout, gate, up f32; dgate and dup f32 or bf16 (rounded as above), each
// its own choice
void swiglu_backward(Tensor& dgate, Tensor& dup, const Tensor& dout, const Tensor& gate,
                     const Tensor& up);

}  // namespace cmoe::ops
