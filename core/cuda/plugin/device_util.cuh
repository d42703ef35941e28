// device_util.cuh — helpers shared by the plugin's kernel files: launch-error reporting, warp and
// block reductions with a fixed combination order (so reductions are deterministic), the bf16
// rounding rule, and the grid-stride loop.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "core/cuda/launch_geometry.h"
#include "core/cuda/plugin/check.h"

namespace cmoe::cuda_plugin {

namespace geom = cmoe::cuda_geom;

// The code of the launch just made: a failure is a bad configuration or a broken device.
inline int32_t launch_status(const char* kernel, const char* file, int line) {
  return cuda_fail(cudaGetLastError(), kernel, file, line);
}
#define CMOE_LAUNCHED(kernel) ::cmoe::cuda_plugin::launch_status("launch of " kernel, __FILE__, __LINE__)

// Rejects negative sizes (a host bug) before anything is queued.
inline int32_t check_sizes(const char* entry, int64_t a, int64_t b = 0, int64_t c = 0, int64_t d = 0) {
  if (a < 0 || b < 0 || c < 0 || d < 0) {
    return set_error(CMOE_CUDA_INVALID_ARGUMENT, "%s: negative size (%lld, %lld, %lld, %lld)", entry,
                     static_cast<long long>(a), static_cast<long long>(b), static_cast<long long>(c),
                     static_cast<long long>(d));
  }
  return CMOE_CUDA_OK;
}

// Grid-stride index over [0, n) for 1-D kernels.
#define CMOE_GRID_STRIDE(i, n)                                                      \
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < (n);         \
       i += int64_t{gridDim.x} * blockDim.x)

template <typename T>
__device__ __forceinline__ T warp_sum(T v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024): warp sums, then the first warp
// sums the warps' results. Every thread gets the total. `scratch`: 32 T of shared memory.
template <typename T>
__device__ T block_sum(T v, T* scratch) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  v = warp_sum(v);
  __syncthreads();  // scratch may still be read by a previous call
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  T t = lane < warps ? scratch[lane] : T(0);
  if (warp == 0) t = warp_sum(t);
  if (threadIdx.x == 0) scratch[0] = t;
  __syncthreads();
  return scratch[0];
}

__device__ __forceinline__ float block_max(float v, float* scratch) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  float t = lane < warps ? scratch[lane] : -INFINITY;
  if (warp == 0) t = warp_max(t);
  if (threadIdx.x == 0) scratch[0] = t;
  __syncthreads();
  return scratch[0];
}

// cmoe::f32_to_bf16 (core/dtype.h) on the bit pattern: round to nearest even, NaN stays NaN.
__device__ __forceinline__ uint16_t f32_to_bf16_bits(float f) {
  uint32_t u = __float_as_uint(f);
  if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x007fffffu) != 0) {
    return static_cast<uint16_t>((u >> 16) | 0x0040u);
  }
  uint32_t rounding = 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>((u + rounding) >> 16);
}

}  // namespace cmoe::cuda_plugin
