// permute.cpp — CPU row gather and weighted scatter-add for MoE dispatch (see permute.h).
//
// Gathers are row copies, OpenMP over output rows. Every accumulation into indexed rows goes
// through row_scatter_add (row_scatter.h), which buckets sources by destination row so threads
// own disjoint rows and each row sums its sources in m order: deterministic without atomics.
#include "core/ops/permute.h"

#include <cstring>

#include "core/ops/row_scatter.h"

namespace cmoe::ops {

namespace {

constexpr int64_t kParallelMin = 1 << 14;  // elements below which threads cost more than they save

void check_mat(const Tensor& t, int64_t rows, int64_t cols, const char* op, const char* what) {
  CMOE_CHECK(t.dtype() == DType::kF32 && t.device().is_cpu() && t.rows() == rows && t.cols() == cols,
             op, ": ", what, " is ", t.str(), ", want f32 (", rows, ", ", cols, ") on CPU");
}

void check_vec(const Tensor& t, int64_t n, DType dt, const char* op, const char* what) {
  CMOE_CHECK(t.dtype() == dt && t.device().is_cpu() && t.numel() == n, op, ": ", what, " is ",
             t.str(), ", want ", dtype_name(dt), " with ", n, " elements on CPU");
}

__attribute__((target_clones("avx512f", "default")))
void scaled_row_and_dot(float* __restrict dy, float* __restrict dw, const float* __restrict g,
                        const float* __restrict y, float w, int64_t d) {
  if (dy != nullptr) {
#pragma omp simd
    for (int64_t i = 0; i < d; ++i) dy[i] = w * g[i];
  }
  if (dw != nullptr) {
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (int64_t i = 0; i < d; ++i) s += g[i] * y[i];
    *dw = s;
  }
}

}  // namespace

// out[m, :] = x[idx[m], :]
void gather_rows_forward(Tensor& out, const Tensor& x, const Tensor& idx) {
  const int64_t n = x.rows(), d = x.cols(), m_rows = idx.numel();
  check_mat(x, n, d, "gather_rows_forward", "x");
  check_mat(out, m_rows, d, "gather_rows_forward", "out");
  check_vec(idx, m_rows, DType::kI32, "gather_rows_forward", "idx");
  float* po = out.data<float>();          // (M, D)
  const float* px = x.data<float>();      // (N, D)
  const int32_t* pi = idx.data<int32_t>();  // (M)
#pragma omp parallel for schedule(static) if (m_rows * d >= kParallelMin)
  for (int64_t m = 0; m < m_rows; ++m) {
    CMOE_CHECK(pi[m] >= 0 && pi[m] < n, "gather_rows_forward: index ", pi[m], " at ", m,
               " outside [0, ", n, ")");
    std::memcpy(po + m * d, px + static_cast<int64_t>(pi[m]) * d, static_cast<size_t>(d) * sizeof(float));
  }
}

// dx[idx[m], :] += dout[m, :]
void gather_rows_backward(Tensor& dx, const Tensor& dout, const Tensor& idx) {
  const int64_t n = dx.rows(), d = dx.cols(), m_rows = idx.numel();
  check_mat(dx, n, d, "gather_rows_backward", "dx");
  check_mat(dout, m_rows, d, "gather_rows_backward", "dout");
  check_vec(idx, m_rows, DType::kI32, "gather_rows_backward", "idx");
  row_scatter_add(dx.data<float>(), n, dout.data<float>(), idx.data<int32_t>(), nullptr, m_rows, d,
                  "gather_rows_backward");
}

// out[idx[m], :] += w[m] * y[m, :], rows summed in m order
void scatter_add_rows_forward(Tensor& out, const Tensor& y, const Tensor& idx, const Tensor& w) {
  const int64_t n = out.rows(), d = out.cols(), m_rows = idx.numel();
  check_mat(out, n, d, "scatter_add_rows_forward", "out");
  check_mat(y, m_rows, d, "scatter_add_rows_forward", "y");
  check_vec(idx, m_rows, DType::kI32, "scatter_add_rows_forward", "idx");
  check_vec(w, m_rows, DType::kF32, "scatter_add_rows_forward", "w");
  row_scatter_add(out.data<float>(), n, y.data<float>(), idx.data<int32_t>(), w.data<float>(),
                  m_rows, d, "scatter_add_rows_forward");
}

// dy[m, :] = w[m] * dout[idx[m], :];  dw[m] = dout[idx[m], :] . y[m, :]
void scatter_add_rows_backward(Tensor& dy, Tensor& dw, const Tensor& dout, const Tensor& y,
                               const Tensor& idx, const Tensor& w) {
  const int64_t n = dout.rows(), d = dout.cols(), m_rows = idx.numel();
  check_mat(dout, n, d, "scatter_add_rows_backward", "dout");
  check_mat(y, m_rows, d, "scatter_add_rows_backward", "y");
  check_vec(idx, m_rows, DType::kI32, "scatter_add_rows_backward", "idx");
  check_vec(w, m_rows, DType::kF32, "scatter_add_rows_backward", "w");
  float* pdy = nullptr;  // (M, D)
  float* pdw = nullptr;  // (M)
  if (dy.defined()) {
    check_mat(dy, m_rows, d, "scatter_add_rows_backward", "dy");
    pdy = dy.data<float>();
  }
  if (dw.defined()) {
    check_vec(dw, m_rows, DType::kF32, "scatter_add_rows_backward", "dw");
    pdw = dw.data<float>();
  }
  if (pdy == nullptr && pdw == nullptr) return;
  const float* pg = dout.data<float>();     // (N, D)
  const float* py = y.data<float>();        // (M, D)
  const int32_t* pi = idx.data<int32_t>();  // (M)
  const float* pw = w.data<float>();        // (M)
#pragma omp parallel for schedule(static) if (m_rows * d >= kParallelMin)
  for (int64_t m = 0; m < m_rows; ++m) {
    CMOE_CHECK(pi[m] >= 0 && pi[m] < n, "scatter_add_rows_backward: index ", pi[m], " at ", m,
               " outside [0, ", n, ")");
    scaled_row_and_dot(pdy != nullptr ? pdy + m * d : nullptr, pdw != nullptr ? pdw + m : nullptr,
                       pg + static_cast<int64_t>(pi[m]) * d, py + m * d, pw[m], d);
  }
}

}  // namespace cmoe::ops
