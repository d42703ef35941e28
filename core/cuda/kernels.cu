// kernels.cu — the CUDA element-wise kernels declared in kernels.h.
//
// Each kernel is a grid-stride loop: the grid is capped at kMaxBlocks blocks of kThreads, enough
// to fill every SM of an H100 several times over, and each thread walks the array in steps of
// the whole grid, so one launch covers any n (including n > 2^31) with coalesced accesses.
#include <cstdio>
#include <cstdlib>

#include "core/cuda/kernels.h"

namespace cmoe::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 4096;

// The rule of cmoe::f32_to_bf16 (core/dtype.h), on the bit pattern, so results match exactly.
__device__ __forceinline__ uint16_t f32_to_bf16_bits(float f) {
  uint32_t u = __float_as_uint(f);
  if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x007fffffu) != 0) {
    return static_cast<uint16_t>((u >> 16) | 0x0040u);  // quiet NaN, sign and payload kept
  }
  uint32_t rounding = 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>((u + rounding) >> 16);
}

__global__ void f32_to_bf16_kernel(uint16_t* __restrict__ out, const float* __restrict__ x,
                                   int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    out[i] = f32_to_bf16_bits(x[i]);
  }
}

__global__ void bf16_to_f32_kernel(float* __restrict__ out, const uint16_t* __restrict__ x,
                                   int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    out[i] = __uint_as_float(static_cast<uint32_t>(x[i]) << 16);
  }
}

// No __restrict__: out may alias a or b (in-place add), which is safe element by element.
__global__ void add_f32_kernel(float* out, const float* a, const float* b, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    out[i] = a[i] + b[i];
  }
}

int grid_for(int64_t n) {
  int64_t blocks = (n + kThreads - 1) / kThreads;
  return static_cast<int>(blocks < kMaxBlocks ? blocks : kMaxBlocks);
}

// A launch error is a bug (bad configuration) or a broken device, never user input: abort with
// the kernel's name. (kernels.h is nvcc-compiled, so it reports without absl.)
void check_launch(const char* kernel, const char* file, int line) {
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) {
    std::fprintf(stderr, "cmoe: CUDA launch of %s failed at %s:%d: %s (%s)\n", kernel, file, line,
                 cudaGetErrorString(err), cudaGetErrorName(err));
    std::fflush(stderr);
    std::abort();
  }
}

}  // namespace

void launch_f32_to_bf16(uint16_t* out, const float* x, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  f32_to_bf16_kernel<<<grid_for(n), kThreads, 0, stream>>>(out, x, n);
  check_launch("f32_to_bf16_kernel", __FILE__, __LINE__);
}

void launch_bf16_to_f32(float* out, const uint16_t* x, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  bf16_to_f32_kernel<<<grid_for(n), kThreads, 0, stream>>>(out, x, n);
  check_launch("bf16_to_f32_kernel", __FILE__, __LINE__);
}

void launch_add_f32(float* out, const float* a, const float* b, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  add_f32_kernel<<<grid_for(n), kThreads, 0, stream>>>(out, a, b, n);
  check_launch("add_f32_kernel", __FILE__, __LINE__);
}

}  // namespace cmoe::cuda
