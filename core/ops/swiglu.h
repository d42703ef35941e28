// swiglu.h — SwiGLU gating (Shazeer 2020): out = silu(gate) * up, silu(z) = z * sigmoid(z).
#pragma once

#include "core/tensor.h"

namespace cmoe::ops {

// gate, up, out: (N, F) f32
void swiglu_forward(Tensor& out, const Tensor& gate, const Tensor& up);
// dgate = dout * up * silu'(gate); dup = dout * silu(gate); both (N, F), overwritten; either
// may be undefined
void swiglu_backward(Tensor& dgate, Tensor& dup, const Tensor& dout, const Tensor& gate,
                     const Tensor& up);

}  // namespace cmoe::ops
