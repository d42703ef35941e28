// softmax.h — row softmax and top-k selection, the router's building blocks (f32).
#pragma once

#include "core/tensor.h"

namespace cmoe::ops {

// out[n, :] = softmax(x[n, :])          x, out: (N, E) f32
void softmax_forward(Tensor& out, const Tensor& x);
// dx = out * (dout - sum(dout * out))   per row
void softmax_backward(Tensor& dx, const Tensor& dout, const Tensor& out);

// The k largest entries of each row, in descending order; ties go to the lower index.
// Entries where mask[n, e] != 0 are never selected (mask may be undefined = none masked).
// values: (N, k) f32; indices: (N, k) i32; x: (N, E) f32; mask: (N, E) i32 or undefined.
void topk_forward(Tensor& values, Tensor& indices, const Tensor& x, int k, const Tensor& mask);
// dx (N, E), overwritten: dx[n, indices[n, j]] = dvalues[n, j], 0 elsewhere.
void topk_backward(Tensor& dx, const Tensor& dvalues, const Tensor& indices);

}  // namespace cmoe::ops
