// kernels.h — CUDA element-wise kernels on raw device pointers: dtype conversion and add.
//
// This header is compiled by both nvcc and the host compiler, so it names only raw pointers and
// cudaStream_t; the tensor-level entry points with shape and device checks are in
// core/cuda/ops.h. Every launcher queues work on `stream` (asynchronous) and aborts on a launch
// error, naming the kernel. bf16 values travel as their 16-bit pattern (cmoe::bf16 layout).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace cmoe::cuda {

// out[i] = bf16(x[i]): round to nearest even, NaN -> quiet NaN; the same bits as
// cmoe::f32_to_bf16 in core/dtype.h.            out: (n) bf16 bits, x: (n) f32
void launch_f32_to_bf16(uint16_t* out, const float* x, int64_t n, cudaStream_t stream);
// out[i] = f32(x[i]) (exact).                    out: (n) f32, x: (n) bf16 bits
void launch_bf16_to_f32(float* out, const uint16_t* x, int64_t n, cudaStream_t stream);
// out[i] = a[i] + b[i]; out may alias a or b.    out, a, b: (n) f32
void launch_add_f32(float* out, const float* a, const float* b, int64_t n, cudaStream_t stream);

}  // namespace cmoe::cuda
