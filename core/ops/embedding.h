// embedding.h — token embedding lookup.
#pragma once

#include "core/tensor.h"

namespace cmoe::ops {

// out[n, :] = table[ids[n], :]        out: (N, D) f32; table: (V, D) f32; ids: (N) i32 in [0, V)
void embedding_forward(Tensor& out, const Tensor& table, const Tensor& ids);
// dtable[ids[n], :] += dout[n, :]     dtable: (V, D) f32, accumulated (caller zeroes it)
void embedding_backward(Tensor& dtable, const Tensor& dout, const Tensor& ids);

}  // namespace cmoe::ops
