// nn.cu — the network kernels of the op table's CUDA column: RMSNorm, RoPE, row softmax, top-k,
// row gather and the deterministic indexed row accumulation, the scatter's backward, and the
// per-row halves of the fused LM-head cross-entropy. Contracts in core/cuda/cuda_api.h; formulas
// in the matching core/ops headers.
//
// Indexed accumulation (embedding and gather backward, the dispatch's combine) must not depend on
// thread timing: sources are stably sorted by destination (CUB's radix sort, index order kept
// within a destination) and each destination row adds its sources in that order, as the CPU's
// row_scatter_add does.
#include <cub/device/device_radix_sort.cuh>

#include "core/cuda/plugin/device_util.cuh"
#include "core/cuda/plugin/entries.h"

namespace cmoe::cuda_plugin {

int32_t col_sum_partials(float* out, double* partial, int64_t rows, int64_t cols, cudaStream_t s);

namespace {

// ---- RMSNorm ----

__global__ void rmsnorm_forward_kernel(float* __restrict__ out, float* __restrict__ rstd, const float* __restrict__ x,
                                       const float* __restrict__ w, int64_t rows, int64_t cols, float eps) {
  __shared__ float scratch[32];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const float* xr = x + r * cols;
    float ss = 0.0f;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) ss += xr[c] * xr[c];
    ss = block_sum(ss, scratch);
    const float inv = 1.0f / sqrtf(ss / static_cast<float>(cols) + eps);
    if (threadIdx.x == 0) rstd[r] = inv;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) out[r * cols + c] = xr[c] * inv * w[c];
  }
}

// dx = r * (dout*w - x * r^2 * mean(dout*w*x))
__global__ void rmsnorm_dx_kernel(float* __restrict__ dx, const float* __restrict__ dout, const float* __restrict__ x,
                                  const float* __restrict__ w, const float* __restrict__ rstd, int64_t rows,
                                  int64_t cols) {
  __shared__ float scratch[32];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const float* g = dout + r * cols;
    const float* xr = x + r * cols;
    float dot = 0.0f;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) dot += g[c] * w[c] * xr[c];
    dot = block_sum(dot, scratch);
    const float inv = rstd[r];
    const float k = inv * inv * dot / static_cast<float>(cols);
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) dx[r * cols + c] = inv * (g[c] * w[c] - xr[c] * k);
  }
}

// partial[chunk, c] = sum over the chunk's rows of dout * x * rstd
__global__ void rmsnorm_dw_partial_kernel(double* __restrict__ partial, const float* __restrict__ dout,
                                          const float* __restrict__ x, const float* __restrict__ rstd, int64_t rows,
                                          int64_t cols, int64_t rows_per_chunk) {
  const int64_t c = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (c >= cols) return;
  const int64_t r0 = blockIdx.y * rows_per_chunk;
  const int64_t r1 = r0 + rows_per_chunk < rows ? r0 + rows_per_chunk : rows;
  double acc = 0;
  for (int64_t r = r0; r < r1; ++r) acc += static_cast<double>(dout[r * cols + c] * x[r * cols + c] * rstd[r]);
  partial[blockIdx.y * cols + c] = acc;
}

// ---- RoPE ----

__global__ void rope_table_kernel(float* __restrict__ cos_t, float* __restrict__ sin_t, int64_t seq, int64_t half,
                                  double theta, int64_t pos0) {
  CMOE_GRID_STRIDE(i, seq * half) {
    const int64_t p = i / half, j = i % half;
    const double freq = pow(theta, -static_cast<double>(2 * j) / static_cast<double>(2 * half));
    const double a = static_cast<double>(pos0 + p) * freq;
    cos_t[i] = static_cast<float>(cos(a));
    sin_t[i] = static_cast<float>(sin(a));
  }
}

// One thread per rotated pair (b, t, h, i); out may alias x (each pair is read before written).
__global__ void rope_apply_kernel(float* out, const float* x, const float* __restrict__ cos_t,
                                  const float* __restrict__ sin_t, int64_t batch, int64_t seq, int64_t heads,
                                  int64_t head_dim, float sign) {
  const int64_t half = head_dim / 2;
  CMOE_GRID_STRIDE(i, batch * seq * heads * half) {
    const int64_t j = i % half, vec = i / half;  // vec = (b * seq + t) * heads + h
    const int64_t t = (vec / heads) % seq;
    const float c = cos_t[t * half + j], s = sign * sin_t[t * half + j];
    const int64_t base = vec * head_dim;
    const float a = x[base + j], b = x[base + j + half];
    out[base + j] = a * c - b * s;
    out[base + j + half] = b * c + a * s;
  }
}

// ---- softmax over rows (a warp per row: router rows are short) ----

__global__ void softmax_forward_kernel(float* __restrict__ out, const float* __restrict__ x, int64_t rows,
                                       int64_t cols) {
  const int lane = threadIdx.x % 32;
  for (int64_t r = blockIdx.x * geom::kRowsPerWarpBlock + threadIdx.x / 32; r < rows;
       r += int64_t{gridDim.x} * geom::kRowsPerWarpBlock) {
    const float* xr = x + r * cols;
    float m = -INFINITY;
    for (int64_t c = lane; c < cols; c += 32) m = fmaxf(m, xr[c]);
    m = warp_max(m);
    float s = 0.0f;
    for (int64_t c = lane; c < cols; c += 32) s += expf(xr[c] - m);
    s = warp_sum(s);
    const float inv = 1.0f / s;
    for (int64_t c = lane; c < cols; c += 32) out[r * cols + c] = expf(xr[c] - m) * inv;
  }
}

__global__ void softmax_backward_kernel(float* __restrict__ dx, const float* __restrict__ g,
                                        const float* __restrict__ y, int64_t rows, int64_t cols) {
  const int lane = threadIdx.x % 32;
  for (int64_t r = blockIdx.x * geom::kRowsPerWarpBlock + threadIdx.x / 32; r < rows;
       r += int64_t{gridDim.x} * geom::kRowsPerWarpBlock) {
    float dot = 0.0f;
    for (int64_t c = lane; c < cols; c += 32) dot += g[r * cols + c] * y[r * cols + c];
    dot = warp_sum(dot);
    for (int64_t c = lane; c < cols; c += 32) dx[r * cols + c] = y[r * cols + c] * (g[r * cols + c] - dot);
  }
}

// ---- top-k (a thread per row; k <= kMaxTopK) ----

constexpr int kMaxTopK = 64;

// The CPU's insertion rule: scanning indices upward, an entry equal to a listed value stops
// behind it (ties keep the lower index first); NaN ranks below every number.
__global__ void topk_forward_kernel(float* __restrict__ values, int32_t* __restrict__ indices,
                                    const float* __restrict__ x, const int32_t* __restrict__ mask, int64_t rows,
                                    int64_t cols, int k) {
  CMOE_GRID_STRIDE(r, rows) {
    const float* xr = x + r * cols;
    const int32_t* mr = mask != nullptr ? mask + r * cols : nullptr;
    float* vr = values + r * k;
    int32_t* ir = indices + r * k;
    int cnt = 0;
    for (int64_t i = 0; i < cols; ++i) {
      const float v = xr[i];
      if ((mr != nullptr && mr[i] != 0) || isnan(v)) continue;
      if (cnt == k && !(v > vr[k - 1])) continue;
      int j = cnt < k ? cnt++ : k - 1;
      for (; j > 0 && v > vr[j - 1]; --j) {
        vr[j] = vr[j - 1];
        ir[j] = ir[j - 1];
      }
      vr[j] = v;
      ir[j] = static_cast<int32_t>(i);
    }
    for (int64_t i = 0; i < cols && cnt < k; ++i) {
      if ((mr == nullptr || mr[i] == 0) && isnan(xr[i])) {
        vr[cnt] = xr[i];
        ir[cnt++] = static_cast<int32_t>(i);
      }
    }
    for (; cnt < k; ++cnt) {  // fewer than k selectable entries (the CPU aborts)
      vr[cnt] = NAN;
      ir[cnt] = -1;
    }
  }
}

__global__ void topk_backward_kernel(float* __restrict__ dx, const float* __restrict__ dv,
                                     const int32_t* __restrict__ indices, int64_t rows, int64_t cols, int k) {
  CMOE_GRID_STRIDE(r, rows) {
    for (int64_t c = 0; c < cols; ++c) dx[r * cols + c] = 0.0f;
    for (int j = 0; j < k; ++j) {
      const int32_t i = indices[r * k + j];
      if (i >= 0 && i < cols) dx[r * cols + i] = dv[r * k + j];
    }
  }
}

// ---- gather, indexed accumulation, scatter backward ----

__global__ void gather_rows_kernel(float* __restrict__ out, const float* __restrict__ x, const int32_t* __restrict__ idx,
                                   int64_t m, int64_t cols, int64_t n_x) {
  CMOE_GRID_STRIDE(i, m * cols) {
    const int64_t src = idx[i / cols];
    out[i] = src >= 0 && src < n_x ? x[src * cols + i % cols] : 0.0f;
  }
}

__global__ void iota_kernel(int32_t* __restrict__ out, int64_t n) {
  CMOE_GRID_STRIDE(i, n) out[i] = static_cast<int32_t>(i);
}

// First position in sorted keys (n) with key >= v.
__device__ int64_t lower_bound(const int32_t* keys, int64_t n, int32_t v) {
  int64_t lo = 0, hi = n;
  while (lo < hi) {
    const int64_t mid = (lo + hi) / 2;
    if (keys[mid] < v) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

// Destination row r (grid-stride over rows) adds its sources, found by binary search in the
// sorted keys, in source order.
__global__ void row_accumulate_kernel(float* __restrict__ out, const float* __restrict__ src,
                                      const int32_t* __restrict__ keys, const int32_t* __restrict__ order,
                                      const float* __restrict__ w, int64_t m, int64_t cols, int64_t n_out) {
  for (int64_t r = blockIdx.x; r < n_out; r += gridDim.x) {
    const int64_t lo = lower_bound(keys, m, static_cast<int32_t>(r));
    const int64_t hi = lower_bound(keys, m, static_cast<int32_t>(r + 1));
    if (lo == hi) continue;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
      float acc = out[r * cols + c];
      for (int64_t s = lo; s < hi; ++s) {
        const int64_t j = order[s];
        acc += (w != nullptr ? w[j] : 1.0f) * src[j * cols + c];
      }
      out[r * cols + c] = acc;
    }
  }
}

__global__ void scatter_dy_kernel(float* __restrict__ dy, const float* __restrict__ dout, const int32_t* __restrict__ idx,
                                  const float* __restrict__ w, int64_t m, int64_t cols) {
  CMOE_GRID_STRIDE(i, m * cols) {
    const int64_t j = i / cols;
    dy[i] = w[j] * dout[int64_t{idx[j]} * cols + i % cols];
  }
}

__global__ void scatter_dw_kernel(float* __restrict__ dw, const float* __restrict__ dout, const float* __restrict__ y,
                                  const int32_t* __restrict__ idx, int64_t m, int64_t cols) {
  __shared__ double scratch[32];
  for (int64_t j = blockIdx.x; j < m; j += gridDim.x) {
    const float* g = dout + int64_t{idx[j]} * cols;
    double acc = 0;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) acc += static_cast<double>(g[c]) * y[j * cols + c];
    acc = block_sum(acc, scratch);
    if (threadIdx.x == 0) dw[j] = static_cast<float>(acc);
  }
}

// ---- cross-entropy rows ----

__global__ void ce_rows_forward_kernel(float* __restrict__ lse, double* __restrict__ row_loss,
                                       const float* __restrict__ logits, const int32_t* __restrict__ targets,
                                       int64_t rows, int64_t vocab) {
  __shared__ float scratch[32];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const float* x = logits + r * vocab;
    float m = -INFINITY;
    for (int64_t c = threadIdx.x; c < vocab; c += blockDim.x) m = fmaxf(m, x[c]);
    m = block_max(m, scratch);
    float s = 0.0f;
    for (int64_t c = threadIdx.x; c < vocab; c += blockDim.x) s += expf(x[c] - m);
    s = block_sum(s, scratch);
    if (threadIdx.x == 0) {
      const float l = m + logf(s);
      const int32_t t = targets[r];
      lse[r] = l;
      row_loss[r] = t >= 0 && t < vocab ? static_cast<double>(l) - x[t] : 0.0;
    }
  }
}

__global__ void ce_rows_backward_kernel(float* __restrict__ logits, const int32_t* __restrict__ targets,
                                        const float* __restrict__ lse, const float* __restrict__ dloss, int64_t rows,
                                        int64_t vocab) {
  const float g = *dloss;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    float* x = logits + r * vocab;
    const int32_t t = targets[r];
    const bool skip = t < 0 || t >= vocab;
    const float l = lse[r];
    for (int64_t c = threadIdx.x; c < vocab; c += blockDim.x) {
      float v = skip ? 0.0f : g * expf(x[c] - l);
      if (c == t) v -= g;
      x[c] = v;
    }
  }
}

size_t align256(size_t b) { return (b + 255) / 256 * 256; }

int32_t sort_temp_bytes(size_t* bytes, int64_t m) {
  *bytes = 0;
  if (m == 0) return CMOE_CUDA_OK;
  CUDA_TRY(cub::DeviceRadixSort::SortPairs(nullptr, *bytes, static_cast<const int32_t*>(nullptr),
                                           static_cast<int32_t*>(nullptr), static_cast<const int32_t*>(nullptr),
                                           static_cast<int32_t*>(nullptr), static_cast<int>(m)));
  return CMOE_CUDA_OK;
}

}  // namespace

int32_t api_rmsnorm_forward_f32(float* out, float* rstd, const float* x, const float* w, int64_t rows, int64_t cols,
                                float eps, CmoeCudaStream stream) {
  if (int32_t c = check_sizes("rmsnorm_forward_f32", rows, cols); c != CMOE_CUDA_OK) return c;
  if (rows == 0) return CMOE_CUDA_OK;
  rmsnorm_forward_kernel<<<geom::row_blocks(rows), geom::row_threads(cols), 0, to_cuda(stream)>>>(out, rstd, x, w,
                                                                                                 rows, cols, eps);
  return CMOE_LAUNCHED("rmsnorm_forward_kernel");
}

int32_t api_rmsnorm_backward_f32(float* dx, float* dw, double* partial, const float* dout, const float* x,
                                 const float* w, const float* rstd, int64_t rows, int64_t cols, CmoeCudaStream stream) {
  if (int32_t c = check_sizes("rmsnorm_backward_f32", rows, cols); c != CMOE_CUDA_OK) return c;
  if (rows == 0 || cols == 0) return CMOE_CUDA_OK;
  const cudaStream_t s = to_cuda(stream);
  if (dx != nullptr) {
    rmsnorm_dx_kernel<<<geom::row_blocks(rows), geom::row_threads(cols), 0, s>>>(dx, dout, x, w, rstd, rows, cols);
    if (int32_t c = CMOE_LAUNCHED("rmsnorm_dx_kernel"); c != CMOE_CUDA_OK) return c;
  }
  if (dw == nullptr) return CMOE_CUDA_OK;
  const dim3 grid(static_cast<unsigned>(geom::colsum_col_blocks(cols)), static_cast<unsigned>(geom::colsum_chunks(rows)));
  rmsnorm_dw_partial_kernel<<<grid, geom::kThreads, 0, s>>>(partial, dout, x, rstd, rows, cols,
                                                            geom::colsum_rows_per_chunk(rows));
  if (int32_t c = CMOE_LAUNCHED("rmsnorm_dw_partial_kernel"); c != CMOE_CUDA_OK) return c;
  return col_sum_partials(dw, partial, rows, cols, s);
}

int32_t api_rope_table_f32(float* cos_t, float* sin_t, int64_t seq, int64_t half, float theta, int64_t pos0,
                           CmoeCudaStream stream) {
  if (int32_t c = check_sizes("rope_table_f32", seq, half, pos0); c != CMOE_CUDA_OK) return c;
  if (seq * half == 0) return CMOE_CUDA_OK;
  rope_table_kernel<<<geom::grid_1d(seq * half), geom::kThreads, 0, to_cuda(stream)>>>(cos_t, sin_t, seq, half,
                                                                                       static_cast<double>(theta), pos0);
  return CMOE_LAUNCHED("rope_table_kernel");
}

int32_t api_rope_apply_f32(float* out, const float* x, const float* cos_t, const float* sin_t, int64_t batch,
                           int64_t seq, int64_t heads, int64_t head_dim, float sign, CmoeCudaStream stream) {
  if (int32_t c = check_sizes("rope_apply_f32", batch, seq, heads, head_dim); c != CMOE_CUDA_OK) return c;
  const int64_t pairs = batch * seq * heads * (head_dim / 2);
  if (pairs == 0) return CMOE_CUDA_OK;
  rope_apply_kernel<<<geom::grid_1d(pairs), geom::kThreads, 0, to_cuda(stream)>>>(out, x, cos_t, sin_t, batch, seq,
                                                                                  heads, head_dim, sign);
  return CMOE_LAUNCHED("rope_apply_kernel");
}

int32_t api_softmax_forward_f32(float* out, const float* x, int64_t rows, int64_t cols, CmoeCudaStream stream) {
  if (int32_t c = check_sizes("softmax_forward_f32", rows, cols); c != CMOE_CUDA_OK) return c;
  if (rows == 0 || cols == 0) return CMOE_CUDA_OK;
  softmax_forward_kernel<<<geom::warp_row_blocks(rows), geom::kThreads, 0, to_cuda(stream)>>>(out, x, rows, cols);
  return CMOE_LAUNCHED("softmax_forward_kernel");
}

int32_t api_softmax_backward_f32(float* dx, const float* dout, const float* out, int64_t rows, int64_t cols,
                                 CmoeCudaStream stream) {
  if (int32_t c = check_sizes("softmax_backward_f32", rows, cols); c != CMOE_CUDA_OK) return c;
  if (rows == 0 || cols == 0) return CMOE_CUDA_OK;
  softmax_backward_kernel<<<geom::warp_row_blocks(rows), geom::kThreads, 0, to_cuda(stream)>>>(dx, dout, out, rows,
                                                                                               cols);
  return CMOE_LAUNCHED("softmax_backward_kernel");
}

int32_t api_topk_forward_f32(float* values, int32_t* indices, const float* x, const int32_t* mask, int64_t rows,
                             int64_t cols, int32_t k, CmoeCudaStream stream) {
  if (int32_t c = check_sizes("topk_forward_f32", rows, cols, k); c != CMOE_CUDA_OK) return c;
  if (k < 1 || k > kMaxTopK) {
    return set_error(CMOE_CUDA_INVALID_ARGUMENT, "topk_forward_f32: k = %d outside [1, %d]", k, kMaxTopK);
  }
  if (rows == 0) return CMOE_CUDA_OK;
  topk_forward_kernel<<<geom::grid_1d(rows), geom::kThreads, 0, to_cuda(stream)>>>(values, indices, x, mask, rows,
                                                                                   cols, k);
  return CMOE_LAUNCHED("topk_forward_kernel");
}

int32_t api_topk_backward_f32(float* dx, const float* dvalues, const int32_t* indices, int64_t rows, int64_t cols,
                              int32_t k, CmoeCudaStream stream) {
  if (int32_t c = check_sizes("topk_backward_f32", rows, cols, k); c != CMOE_CUDA_OK) return c;
  if (rows == 0) return CMOE_CUDA_OK;
  topk_backward_kernel<<<geom::grid_1d(rows), geom::kThreads, 0, to_cuda(stream)>>>(dx, dvalues, indices, rows, cols,
                                                                                    k);
  return CMOE_LAUNCHED("topk_backward_kernel");
}

int32_t api_gather_rows_f32(float* out, const float* x, const int32_t* idx, int64_t m, int64_t cols, int64_t n_x,
                            CmoeCudaStream stream) {
  if (int32_t c = check_sizes("gather_rows_f32", m, cols, n_x); c != CMOE_CUDA_OK) return c;
  if (m * cols == 0) return CMOE_CUDA_OK;
  gather_rows_kernel<<<geom::grid_1d(m * cols), geom::kThreads, 0, to_cuda(stream)>>>(out, x, idx, m, cols, n_x);
  return CMOE_LAUNCHED("gather_rows_kernel");
}

int32_t api_row_scatter_workspace(size_t* bytes, int64_t m, int64_t n_out) {
  *bytes = 0;
  if (int32_t c = check_sizes("row_scatter_workspace", m, n_out); c != CMOE_CUDA_OK) return c;
  size_t temp = 0;
  if (int32_t c = sort_temp_bytes(&temp, m); c != CMOE_CUDA_OK) return c;
  // sorted keys, source order in, source order out, CUB's scratch
  *bytes = 3 * align256(static_cast<size_t>(m) * sizeof(int32_t)) + align256(temp);
  return CMOE_CUDA_OK;
}

int32_t api_row_scatter_add_f32(float* out, const float* src, const int32_t* idx, const float* w, int64_t m,
                                int64_t cols, int64_t n_out, void* workspace, size_t workspace_bytes,
                                CmoeCudaStream stream) {
  if (int32_t c = check_sizes("row_scatter_add_f32", m, cols, n_out); c != CMOE_CUDA_OK) return c;
  if (m == 0 || cols == 0 || n_out == 0) return CMOE_CUDA_OK;
  size_t need = 0;
  if (int32_t c = api_row_scatter_workspace(&need, m, n_out); c != CMOE_CUDA_OK) return c;
  if (workspace_bytes < need) {
    return set_error(CMOE_CUDA_INVALID_ARGUMENT, "row_scatter_add_f32: %zu bytes of workspace, %zu needed",
                     workspace_bytes, need);
  }
  const size_t ints = align256(static_cast<size_t>(m) * sizeof(int32_t));
  char* base = static_cast<char*>(workspace);
  auto* keys = reinterpret_cast<int32_t*>(base);
  auto* order_in = reinterpret_cast<int32_t*>(base + ints);
  auto* order = reinterpret_cast<int32_t*>(base + 2 * ints);
  void* temp = base + 3 * ints;
  size_t temp_bytes = workspace_bytes - 3 * ints;
  const cudaStream_t s = to_cuda(stream);
  iota_kernel<<<geom::grid_1d(m), geom::kThreads, 0, s>>>(order_in, m);
  if (int32_t c = CMOE_LAUNCHED("iota_kernel"); c != CMOE_CUDA_OK) return c;
  // All 32 key bits: an out-of-range (even negative) index sorts somewhere no row looks.
  CUDA_TRY(cub::DeviceRadixSort::SortPairs(temp, temp_bytes, idx, keys, order_in, order, static_cast<int>(m), 0,
                                           static_cast<int>(sizeof(int32_t) * 8), s));
  row_accumulate_kernel<<<geom::row_blocks(n_out), geom::row_threads(cols), 0, s>>>(out, src, keys, order, w, m, cols,
                                                                                     n_out);
  return CMOE_LAUNCHED("row_accumulate_kernel");
}

int32_t api_scatter_rows_backward_f32(float* dy, float* dw, const float* dout, const float* y, const int32_t* idx,
                                      const float* w, int64_t m, int64_t cols, CmoeCudaStream stream) {
  if (int32_t c = check_sizes("scatter_rows_backward_f32", m, cols); c != CMOE_CUDA_OK) return c;
  if (m == 0) return CMOE_CUDA_OK;
  const cudaStream_t s = to_cuda(stream);
  if (dy != nullptr && cols > 0) {
    scatter_dy_kernel<<<geom::grid_1d(m * cols), geom::kThreads, 0, s>>>(dy, dout, idx, w, m, cols);
    if (int32_t c = CMOE_LAUNCHED("scatter_dy_kernel"); c != CMOE_CUDA_OK) return c;
  }
  if (dw != nullptr) {
    scatter_dw_kernel<<<geom::row_blocks(m), geom::row_threads(cols), 0, s>>>(dw, dout, y, idx, m, cols);
    if (int32_t c = CMOE_LAUNCHED("scatter_dw_kernel"); c != CMOE_CUDA_OK) return c;
  }
  return CMOE_CUDA_OK;
}

int32_t api_ce_rows_forward_f32(float* lse, double* row_loss, const float* logits, const int32_t* targets,
                                int64_t rows, int64_t vocab, CmoeCudaStream stream) {
  if (int32_t c = check_sizes("ce_rows_forward_f32", rows, vocab); c != CMOE_CUDA_OK) return c;
  if (rows == 0) return CMOE_CUDA_OK;
  ce_rows_forward_kernel<<<geom::row_blocks(rows), geom::row_threads(vocab), 0, to_cuda(stream)>>>(
      lse, row_loss, logits, targets, rows, vocab);
  return CMOE_LAUNCHED("ce_rows_forward_kernel");
}

int32_t api_ce_rows_backward_f32(float* logits, const int32_t* targets, const float* lse, const float* dloss,
                                 int64_t rows, int64_t vocab, CmoeCudaStream stream) {
  if (int32_t c = check_sizes("ce_rows_backward_f32", rows, vocab); c != CMOE_CUDA_OK) return c;
  if (rows == 0) return CMOE_CUDA_OK;
  ce_rows_backward_kernel<<<geom::row_blocks(rows), geom::row_threads(vocab), 0, to_cuda(stream)>>>(
      logits, targets, lse, dloss, rows, vocab);
  return CMOE_LAUNCHED("ce_rows_backward_kernel");
}

}  // namespace cmoe::cuda_plugin
