// ops.h — tensor-level entry points for the CUDA element-wise kernels (in the CUDA plugin,
// core/cuda/plugin/kernels.cu).
//
// These check shapes, dtypes and devices (a mismatch is a caller bug: CMOE_CHECK) and queue
// the kernel on `stream`; they return before the GPU has finished.
#pragma once

#include "core/cuda/stream.h"
#include "core/tensor.h"

namespace cmoe::cuda {

// out = x in out's dtype (f32 -> bf16 rounds to nearest even; bf16 -> f32 is exact).
// out, x: same shape, CUDA, one f32 and one bf16 (or both the same dtype: a device copy).
void convert_dtype(Tensor& out, const Tensor& x, StreamHandle stream);

// out = a + b.  out, a, b: same shape, f32, CUDA; out may alias a or b.
void add(Tensor& out, const Tensor& a, const Tensor& b, StreamHandle stream);

}  // namespace cmoe::cuda
