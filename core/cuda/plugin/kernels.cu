// kernels.cu — the plugin's element-wise kernels and their entries (f32_to_bf16, bf16_to_f32,
// add_f32; contracts in core/cuda/cuda_api.h). bf16 values travel as their 16-bit pattern.
//
// Each kernel is a grid-stride loop: the grid is capped at kMaxBlocks blocks of kThreads, enough
// to fill every SM of an H100 several times over, and each thread walks the array in steps of
// the whole grid, so one launch covers any n (including n > 2^31) with coalesced accesses.
#include "core/cuda/plugin/check.h"
#include "core/cuda/plugin/entries.h"

namespace cmoe::cuda_plugin {

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

// A launch error is a bug (bad configuration) or a broken device, never user input; core turns
// the code into a fatal check naming the kernel.
int32_t launch_status(const char* kernel, const char* file, int line) {
  return cuda_fail(cudaGetLastError(), kernel, file, line);
}

}  // namespace

int32_t api_f32_to_bf16(uint16_t* out, const float* x, int64_t n, CmoeCudaStream stream) {
  if (n == 0) return CMOE_CUDA_OK;
  f32_to_bf16_kernel<<<grid_for(n), kThreads, 0, to_cuda(stream)>>>(out, x, n);
  return launch_status("launch of f32_to_bf16_kernel", __FILE__, __LINE__);
}

int32_t api_bf16_to_f32(float* out, const uint16_t* x, int64_t n, CmoeCudaStream stream) {
  if (n == 0) return CMOE_CUDA_OK;
  bf16_to_f32_kernel<<<grid_for(n), kThreads, 0, to_cuda(stream)>>>(out, x, n);
  return launch_status("launch of bf16_to_f32_kernel", __FILE__, __LINE__);
}

int32_t api_add_f32(float* out, const float* a, const float* b, int64_t n, CmoeCudaStream stream) {
  if (n == 0) return CMOE_CUDA_OK;
  add_f32_kernel<<<grid_for(n), kThreads, 0, to_cuda(stream)>>>(out, a, b, n);
  return launch_status("launch of add_f32_kernel", __FILE__, __LINE__);
}

}  // namespace cmoe::cuda_plugin
