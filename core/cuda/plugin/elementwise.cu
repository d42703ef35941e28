// elementwise.cu — the element-wise, row and reduction kernels of the op table's CUDA column:
// fill, mul, scale, sums, scale_rows, row dots, add_bias, column sums, SwiGLU. Contracts in
// core/cuda/cuda_api.h; formulas in core/ops/elementwise.h and swiglu.h.
//
// Reductions accumulate in f64 in an order fixed by the launch geometry (launch_geometry.h), so
// a result is the same on every run; column sums go through per-chunk f64 partials.
#include "core/cuda/plugin/device_util.cuh"
#include "core/cuda/plugin/entries.h"

namespace cmoe::cuda_plugin {

namespace {

__global__ void fill_kernel(float* __restrict__ out, float value, int64_t n) {
  CMOE_GRID_STRIDE(i, n) out[i] = value;
}

__global__ void fill_from_kernel(float* __restrict__ out, const float* __restrict__ value, int64_t n) {
  const float v = *value;
  CMOE_GRID_STRIDE(i, n) out[i] = v;
}

// No __restrict__ on these: out may alias an input (in-place use), which is safe per element.
__global__ void mul_kernel(float* out, const float* a, const float* b, int64_t n) {
  CMOE_GRID_STRIDE(i, n) out[i] = a[i] * b[i];
}

__global__ void scale_kernel(float* out, const float* x, float s, int64_t n) {
  CMOE_GRID_STRIDE(i, n) out[i] = s * x[i];
}

template <typename T>
__global__ void sum_kernel(float* __restrict__ out, const T* __restrict__ x, int64_t n) {
  __shared__ double scratch[32];
  double acc = 0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) acc += static_cast<double>(x[i]);
  acc = block_sum(acc, scratch);
  if (threadIdx.x == 0) *out = static_cast<float>(acc);
}

__global__ void scale_rows_kernel(float* out, const float* x, const float* __restrict__ s, int64_t rows,
                                  int64_t cols) {
  CMOE_GRID_STRIDE(i, rows * cols) out[i] = s[i / cols] * x[i];
}

__global__ void row_dot_kernel(float* __restrict__ out, const float* __restrict__ a, const float* __restrict__ b,
                               int64_t rows, int64_t cols) {
  __shared__ double scratch[32];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    double acc = 0;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) acc += static_cast<double>(a[r * cols + c]) * b[r * cols + c];
    acc = block_sum(acc, scratch);
    if (threadIdx.x == 0) out[r] = static_cast<float>(acc);
  }
}

__global__ void add_bias_kernel(float* out, const float* x, const float* __restrict__ b, int64_t rows, int64_t cols) {
  CMOE_GRID_STRIDE(i, rows * cols) out[i] = x[i] + b[i % cols];
}

// partial[chunk, c] = sum of x[r, c] over the chunk's rows (in order).
__global__ void col_partial_kernel(double* __restrict__ partial, const float* __restrict__ x, int64_t rows,
                                   int64_t cols, int64_t rows_per_chunk) {
  const int64_t c = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  const int64_t chunk = blockIdx.y;
  if (c >= cols) return;
  const int64_t r0 = chunk * rows_per_chunk;
  const int64_t r1 = r0 + rows_per_chunk < rows ? r0 + rows_per_chunk : rows;
  double acc = 0;
  for (int64_t r = r0; r < r1; ++r) acc += x[r * cols + c];
  partial[chunk * cols + c] = acc;
}

// out[c] += sum over chunks, in chunk order.
__global__ void col_reduce_kernel(float* __restrict__ out, const double* __restrict__ partial, int64_t chunks,
                                  int64_t cols) {
  CMOE_GRID_STRIDE(c, cols) {
    double acc = 0;
    for (int64_t k = 0; k < chunks; ++k) acc += partial[k * cols + c];
    out[c] += static_cast<float>(acc);
  }
}

__device__ __forceinline__ float sigmoid(float z) { return 1.0f / (1.0f + expf(-z)); }

__global__ void swiglu_forward_kernel(float* out, const float* gate, const float* up, int64_t n) {
  CMOE_GRID_STRIDE(i, n) {
    const float g = gate[i];
    out[i] = g * sigmoid(g) * up[i];
  }
}

// silu'(g) = s (1 + g (1 - s)), s = sigmoid(g)
__global__ void swiglu_backward_kernel(float* dgate, float* dup, const float* dout, const float* gate,
                                       const float* up, int64_t n) {
  CMOE_GRID_STRIDE(i, n) {
    const float g = gate[i], s = sigmoid(g), d = dout[i];
    if (dgate != nullptr) dgate[i] = d * up[i] * s * (1.0f + g * (1.0f - s));
    if (dup != nullptr) dup[i] = d * g * s;
  }
}

}  // namespace

// Column sums through partials, shared by col_sum_f32 and rmsnorm's dw (nn.cu declares it).
int32_t col_sum_partials(float* out, double* partial, int64_t rows, int64_t cols, cudaStream_t s) {
  const int64_t chunks = geom::colsum_chunks(rows);
  if (chunks == 0 || cols == 0) return CMOE_CUDA_OK;
  col_reduce_kernel<<<geom::grid_1d(cols), geom::kThreads, 0, s>>>(out, partial, chunks, cols);
  return CMOE_LAUNCHED("col_reduce_kernel");
}

int32_t api_fill_f32(float* out, float value, int64_t n, CmoeCudaStream stream) {
  if (int32_t c = check_sizes("fill_f32", n); c != CMOE_CUDA_OK) return c;
  if (n == 0) return CMOE_CUDA_OK;
  fill_kernel<<<geom::grid_1d(n), geom::kThreads, 0, to_cuda(stream)>>>(out, value, n);
  return CMOE_LAUNCHED("fill_kernel");
}

int32_t api_fill_from_f32(float* out, const float* value, int64_t n, CmoeCudaStream stream) {
  if (int32_t c = check_sizes("fill_from_f32", n); c != CMOE_CUDA_OK) return c;
  if (n == 0) return CMOE_CUDA_OK;
  fill_from_kernel<<<geom::grid_1d(n), geom::kThreads, 0, to_cuda(stream)>>>(out, value, n);
  return CMOE_LAUNCHED("fill_from_kernel");
}

int32_t api_mul_f32(float* out, const float* a, const float* b, int64_t n, CmoeCudaStream stream) {
  if (int32_t c = check_sizes("mul_f32", n); c != CMOE_CUDA_OK) return c;
  if (n == 0) return CMOE_CUDA_OK;
  mul_kernel<<<geom::grid_1d(n), geom::kThreads, 0, to_cuda(stream)>>>(out, a, b, n);
  return CMOE_LAUNCHED("mul_kernel");
}

int32_t api_scale_f32(float* out, const float* x, float s, int64_t n, CmoeCudaStream stream) {
  if (int32_t c = check_sizes("scale_f32", n); c != CMOE_CUDA_OK) return c;
  if (n == 0) return CMOE_CUDA_OK;
  scale_kernel<<<geom::grid_1d(n), geom::kThreads, 0, to_cuda(stream)>>>(out, x, s, n);
  return CMOE_LAUNCHED("scale_kernel");
}

int32_t api_sum_f32(float* out, const float* x, int64_t n, CmoeCudaStream stream) {
  if (int32_t c = check_sizes("sum_f32", n); c != CMOE_CUDA_OK) return c;
  // One block even for n == 0: the sum of nothing is written as 0.
  sum_kernel<float><<<1, geom::kReduceThreads, 0, to_cuda(stream)>>>(out, x, n);
  return CMOE_LAUNCHED("sum_kernel<float>");
}

int32_t api_sum_f64(float* out, const double* x, int64_t n, CmoeCudaStream stream) {
  if (int32_t c = check_sizes("sum_f64", n); c != CMOE_CUDA_OK) return c;
  sum_kernel<double><<<1, geom::kReduceThreads, 0, to_cuda(stream)>>>(out, x, n);
  return CMOE_LAUNCHED("sum_kernel<double>");
}

int32_t api_scale_rows_f32(float* out, const float* x, const float* s, int64_t rows, int64_t cols,
                           CmoeCudaStream stream) {
  if (int32_t c = check_sizes("scale_rows_f32", rows, cols); c != CMOE_CUDA_OK) return c;
  if (rows * cols == 0) return CMOE_CUDA_OK;
  scale_rows_kernel<<<geom::grid_1d(rows * cols), geom::kThreads, 0, to_cuda(stream)>>>(out, x, s, rows, cols);
  return CMOE_LAUNCHED("scale_rows_kernel");
}

int32_t api_row_dot_f32(float* out, const float* a, const float* b, int64_t rows, int64_t cols,
                        CmoeCudaStream stream) {
  if (int32_t c = check_sizes("row_dot_f32", rows, cols); c != CMOE_CUDA_OK) return c;
  if (rows == 0) return CMOE_CUDA_OK;
  row_dot_kernel<<<geom::row_blocks(rows), geom::row_threads(cols), 0, to_cuda(stream)>>>(out, a, b, rows, cols);
  return CMOE_LAUNCHED("row_dot_kernel");
}

int32_t api_add_bias_f32(float* out, const float* x, const float* b, int64_t rows, int64_t cols,
                         CmoeCudaStream stream) {
  if (int32_t c = check_sizes("add_bias_f32", rows, cols); c != CMOE_CUDA_OK) return c;
  if (rows * cols == 0) return CMOE_CUDA_OK;
  add_bias_kernel<<<geom::grid_1d(rows * cols), geom::kThreads, 0, to_cuda(stream)>>>(out, x, b, rows, cols);
  return CMOE_LAUNCHED("add_bias_kernel");
}

int32_t api_col_sum_f32(float* out, const float* x, int64_t rows, int64_t cols, double* partial,
                        CmoeCudaStream stream) {
  if (int32_t c = check_sizes("col_sum_f32", rows, cols); c != CMOE_CUDA_OK) return c;
  const int64_t chunks = geom::colsum_chunks(rows);
  if (chunks == 0 || cols == 0) return CMOE_CUDA_OK;
  const cudaStream_t s = to_cuda(stream);
  const dim3 grid(static_cast<unsigned>(geom::colsum_col_blocks(cols)), static_cast<unsigned>(chunks));
  col_partial_kernel<<<grid, geom::kThreads, 0, s>>>(partial, x, rows, cols, geom::colsum_rows_per_chunk(rows));
  if (int32_t c = CMOE_LAUNCHED("col_partial_kernel"); c != CMOE_CUDA_OK) return c;
  return col_sum_partials(out, partial, rows, cols, s);
}

int32_t api_swiglu_forward_f32(float* out, const float* gate, const float* up, int64_t n, CmoeCudaStream stream) {
  if (int32_t c = check_sizes("swiglu_forward_f32", n); c != CMOE_CUDA_OK) return c;
  if (n == 0) return CMOE_CUDA_OK;
  swiglu_forward_kernel<<<geom::grid_1d(n), geom::kThreads, 0, to_cuda(stream)>>>(out, gate, up, n);
  return CMOE_LAUNCHED("swiglu_forward_kernel");
}

int32_t api_swiglu_backward_f32(float* dgate, float* dup, const float* dout, const float* gate, const float* up,
                                int64_t n, CmoeCudaStream stream) {
  if (int32_t c = check_sizes("swiglu_backward_f32", n); c != CMOE_CUDA_OK) return c;
  if (n == 0 || (dgate == nullptr && dup == nullptr)) return CMOE_CUDA_OK;
  swiglu_backward_kernel<<<geom::grid_1d(n), geom::kThreads, 0, to_cuda(stream)>>>(dgate, dup, dout, gate, up, n);
  return CMOE_LAUNCHED("swiglu_backward_kernel");
}

}  // namespace cmoe::cuda_plugin
