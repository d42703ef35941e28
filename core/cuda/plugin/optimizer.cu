// optimizer.cu — multi-tensor kernels for the optimizer step: AdamW over every parameter in one
// launch, and the per-chunk squared sums behind the global gradient norm. A chunk list (built on
// the host, core/cuda/multi_tensor.h) names for block c a tensor and a range of at most
// kMultiTensorChunk elements of it; every array lives on the device.
#include "core/cuda/plugin/device_util.cuh"
#include "core/cuda/plugin/entries.h"

namespace cmoe::cuda_plugin {

namespace {

// The update of core/ops' AdamW (moe/train/optimizer.cpp), in the same order of operations:
//   g' = g * grad_scale; m = b1 m + (1 - b1) g'; v = b2 v + (1 - b2) g'^2;
//   p = p * decay_mul - step_size * m / (sqrt(v) * inv_sqrt_bc2 + eps)
__global__ void adamw_multi_kernel(float* const* __restrict__ params, float* const* __restrict__ exp_avg,
                                   float* const* __restrict__ exp_avg_sq, const float* const* __restrict__ grads,
                                   const float* __restrict__ decay_mul, const int64_t* __restrict__ chunk_tensor,
                                   const int64_t* __restrict__ chunk_start, const int64_t* __restrict__ chunk_len,
                                   int64_t chunks, float b1, float b2, float eps, float step, float isb2, float gs) {
  for (int64_t c = blockIdx.x; c < chunks; c += gridDim.x) {
    const int64_t t = chunk_tensor[c], start = chunk_start[c], len = chunk_len[c];
    float* p = params[t] + start;
    float* m = exp_avg[t] + start;
    float* v = exp_avg_sq[t] + start;
    const float* g = grads[t] + start;
    const float decay = decay_mul[t];
    for (int64_t i = threadIdx.x; i < len; i += blockDim.x) {
      const float gi = g[i] * gs;
      const float mi = b1 * m[i] + (1.0f - b1) * gi;
      const float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
      m[i] = mi;
      v[i] = vi;
      p[i] = p[i] * decay - step * mi / (sqrtf(vi) * isb2 + eps);
    }
  }
}

__global__ void sum_squares_multi_kernel(double* __restrict__ sums, const float* const* __restrict__ x,
                                         const int64_t* __restrict__ chunk_tensor,
                                         const int64_t* __restrict__ chunk_start,
                                         const int64_t* __restrict__ chunk_len, int64_t chunks) {
  __shared__ double scratch[32];
  for (int64_t c = blockIdx.x; c < chunks; c += gridDim.x) {
    const float* p = x[chunk_tensor[c]] + chunk_start[c];
    const int64_t len = chunk_len[c];
    double acc = 0;
    for (int64_t i = threadIdx.x; i < len; i += blockDim.x) acc += static_cast<double>(p[i]) * p[i];
    acc = block_sum(acc, scratch);
    if (threadIdx.x == 0) sums[c] = acc;
  }
}

}  // namespace

int32_t api_adamw_multi_f32(float* const* params, float* const* exp_avg, float* const* exp_avg_sq,
                            const float* const* grads, const float* decay_mul, const int64_t* chunk_tensor,
                            const int64_t* chunk_start, const int64_t* chunk_len, int64_t chunks, float beta1,
                            float beta2, float eps, float step_size, float inv_sqrt_bc2, float grad_scale,
                            CmoeCudaStream stream) {
  if (int32_t c = check_sizes("adamw_multi_f32", chunks); c != CMOE_CUDA_OK) return c;
  if (chunks == 0) return CMOE_CUDA_OK;
  const int64_t blocks = chunks < geom::kMaxBlocks * 16 ? chunks : geom::kMaxBlocks * 16;
  adamw_multi_kernel<<<static_cast<unsigned>(blocks), geom::kThreads, 0, to_cuda(stream)>>>(
      params, exp_avg, exp_avg_sq, grads, decay_mul, chunk_tensor, chunk_start, chunk_len, chunks, beta1, beta2, eps,
      step_size, inv_sqrt_bc2, grad_scale);
  return CMOE_LAUNCHED("adamw_multi_kernel");
}

int32_t api_sum_squares_multi_f32(double* chunk_sums, const float* const* x, const int64_t* chunk_tensor,
                                  const int64_t* chunk_start, const int64_t* chunk_len, int64_t chunks,
                                  CmoeCudaStream stream) {
  if (int32_t c = check_sizes("sum_squares_multi_f32", chunks); c != CMOE_CUDA_OK) return c;
  if (chunks == 0) return CMOE_CUDA_OK;
  const int64_t blocks = chunks < geom::kMaxBlocks * 16 ? chunks : geom::kMaxBlocks * 16;
  sum_squares_multi_kernel<<<static_cast<unsigned>(blocks), geom::kThreads, 0, to_cuda(stream)>>>(
      chunk_sums, x, chunk_tensor, chunk_start, chunk_len, chunks);
  return CMOE_LAUNCHED("sum_squares_multi_kernel");
}

}  // namespace cmoe::cuda_plugin
