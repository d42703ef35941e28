// softmax.cpp — CPU row softmax and top-k (see softmax.h).
//
// Router rows are short (E = 16..128), so a row is a handful of AVX-512 vectors: max, exp of
// the shifted row, sum, scale — OpenMP over rows once there are enough of them. Top-k with
// small k is one pass per row inserting into a sorted list of the best k (value descending,
// index ascending), written straight into the outputs; NaN ranks below every number so a
// blown-up logit is never preferred to a finite one.
#include "core/ops/softmax.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "core/cpu/avx512_math.h"
#include "core/cpu/kernels.h"

namespace cmoe::ops {

namespace {

constexpr int64_t kParallelMin = 1 << 13;  // elements below which threads cost more than they save

// ---- portable row bodies ------------------------------------------------------------------

void softmax_row(float* out, const float* x, int64_t e) {
  float mx = -std::numeric_limits<float>::infinity();
  for (int64_t i = 0; i < e; ++i) mx = std::max(mx, x[i]);
  float s = 0.0f;
  for (int64_t i = 0; i < e; ++i) {
    out[i] = std::exp(x[i] - mx);
    s += out[i];
  }
  const float inv = 1.0f / s;
  for (int64_t i = 0; i < e; ++i) out[i] *= inv;
}

void softmax_backward_row(float* dx, const float* g, const float* y, int64_t e) {
  float dot = 0.0f;
  for (int64_t i = 0; i < e; ++i) dot += g[i] * y[i];
  for (int64_t i = 0; i < e; ++i) dx[i] = y[i] * (g[i] - dot);
}

// ---- AVX-512 row bodies -------------------------------------------------------------------

__attribute__((target("avx512f"))) void softmax_row_avx512(float* out, const float* x, int64_t e) {
  const __m512 ninf = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  __m512 vmax = ninf;
  for (int64_t i = 0; i < e; i += 16) {
    const __mmask16 m = e - i >= 16 ? static_cast<__mmask16>(0xffff) : cpu::tail_mask(e - i);
    vmax = _mm512_max_ps(vmax, _mm512_mask_loadu_ps(ninf, m, x + i));
  }
  const __m512 mx = _mm512_set1_ps(_mm512_reduce_max_ps(vmax));
  __m512 vsum = _mm512_setzero_ps();
  for (int64_t i = 0; i < e; i += 16) {
    const __mmask16 m = e - i >= 16 ? static_cast<__mmask16>(0xffff) : cpu::tail_mask(e - i);
    const __m512 v = cpu::exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), mx));
    vsum = _mm512_add_ps(vsum, _mm512_maskz_mov_ps(m, v));
    _mm512_mask_storeu_ps(out + i, m, v);
  }
  const __m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(vsum));
  for (int64_t i = 0; i < e; i += 16) {
    const __mmask16 m = e - i >= 16 ? static_cast<__mmask16>(0xffff) : cpu::tail_mask(e - i);
    _mm512_mask_storeu_ps(out + i, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, out + i), inv));
  }
}

__attribute__((target("avx512f"))) void softmax_backward_row_avx512(float* dx, const float* g,
                                                                    const float* y, int64_t e) {
  __m512 acc = _mm512_setzero_ps();
  for (int64_t i = 0; i < e; i += 16) {
    const __mmask16 m = e - i >= 16 ? static_cast<__mmask16>(0xffff) : cpu::tail_mask(e - i);
    acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, g + i), _mm512_maskz_loadu_ps(m, y + i), acc);
  }
  const __m512 dot = _mm512_set1_ps(_mm512_reduce_add_ps(acc));
  for (int64_t i = 0; i < e; i += 16) {
    const __mmask16 m = e - i >= 16 ? static_cast<__mmask16>(0xffff) : cpu::tail_mask(e - i);
    const __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, y + i),
                                   _mm512_sub_ps(_mm512_maskz_loadu_ps(m, g + i), dot));
    _mm512_mask_storeu_ps(dx + i, m, v);
  }
}

void check_rows(const Tensor& t, int64_t n, int64_t e, DType dt, const char* op, const char* what) {
  CMOE_CHECK(t.dtype() == dt && t.device().is_cpu() && t.rows() == n && t.cols() == e, op, ": ",
             what, " is ", t.str(), ", want ", dtype_name(dt), " (", n, ", ", e, ") on CPU");
}

}  // namespace

// out[n, :] = exp(x[n, :] - max) / sum(exp(x[n, :] - max))
void softmax_forward(Tensor& out, const Tensor& x) {
  const int64_t n = x.rows(), e = x.cols();
  check_rows(x, n, e, DType::kF32, "softmax_forward", "x");
  check_rows(out, n, e, DType::kF32, "softmax_forward", "out");
  float* po = out.data<float>();      // (N, E)
  const float* px = x.data<float>();  // (N, E)
  const bool avx = cpu::has_avx512();
#pragma omp parallel for schedule(static) if (n * e >= kParallelMin)
  for (int64_t r = 0; r < n; ++r) {
    if (avx) {
      softmax_row_avx512(po + r * e, px + r * e, e);
    } else {
      softmax_row(po + r * e, px + r * e, e);
    }
  }
}

// dx = out * (dout - sum(dout * out))   per row
void softmax_backward(Tensor& dx, const Tensor& dout, const Tensor& out) {
  const int64_t n = out.rows(), e = out.cols();
  check_rows(out, n, e, DType::kF32, "softmax_backward", "out");
  check_rows(dout, n, e, DType::kF32, "softmax_backward", "dout");
  check_rows(dx, n, e, DType::kF32, "softmax_backward", "dx");
  float* pdx = dx.data<float>();        // (N, E)
  const float* pg = dout.data<float>();  // (N, E)
  const float* py = out.data<float>();   // (N, E)
  const bool avx = cpu::has_avx512();
#pragma omp parallel for schedule(static) if (n * e >= kParallelMin)
  for (int64_t r = 0; r < n; ++r) {
    if (avx) {
      softmax_backward_row_avx512(pdx + r * e, pg + r * e, py + r * e, e);
    } else {
      softmax_backward_row(pdx + r * e, pg + r * e, py + r * e, e);
    }
  }
}

// values[n, j], indices[n, j] = the j-th entry of row n in (value desc, index asc) order among
// entries with mask[n, e] == 0.
void topk_forward(Tensor& values, Tensor& indices, const Tensor& x, int k, const Tensor& mask) {
  const int64_t n = x.rows(), e = x.cols();
  check_rows(x, n, e, DType::kF32, "topk_forward", "x");
  check_rows(values, n, k, DType::kF32, "topk_forward", "values");
  check_rows(indices, n, k, DType::kI32, "topk_forward", "indices");
  CMOE_CHECK(k >= 1 && k <= e, "topk_forward: k ", k, " for rows of ", e);
  const int32_t* pm = nullptr;  // (N, E)
  if (mask.defined()) {
    check_rows(mask, n, e, DType::kI32, "topk_forward", "mask");
    pm = mask.data<int32_t>();
  }
  const float* px = x.data<float>();          // (N, E)
  float* pv = values.data<float>();           // (N, k)
  int32_t* pi = indices.data<int32_t>();      // (N, k)
  int64_t short_row = -1;                     // a row with fewer than k selectable entries
#pragma omp parallel for schedule(static) if (n * e >= kParallelMin)
  for (int64_t r = 0; r < n; ++r) {
    const float* xr = px + r * e;
    const int32_t* mr = pm != nullptr ? pm + r * e : nullptr;
    float* vr = pv + r * k;
    int32_t* ir = pi + r * k;
    // Insertion into the sorted best-k list, scanning indices upward: an entry equal to a
    // listed value stops behind it, so ties keep the lower index first.
    int cnt = 0;
    for (int64_t i = 0; i < e; ++i) {
      const float v = xr[i];
      if ((mr != nullptr && mr[i] != 0) || std::isnan(v)) continue;
      if (cnt == k && !(v > vr[k - 1])) continue;
      int j = cnt < k ? cnt++ : k - 1;
      for (; j > 0 && v > vr[j - 1]; --j) {
        vr[j] = vr[j - 1];
        ir[j] = ir[j - 1];
      }
      vr[j] = v;
      ir[j] = static_cast<int32_t>(i);
    }
    // NaN ranks below every number: it fills the list only when too few numbers remain.
    for (int64_t i = 0; i < e && cnt < k; ++i) {
      if ((mr == nullptr || mr[i] == 0) && std::isnan(xr[i])) {
        vr[cnt] = xr[i];
        ir[cnt++] = static_cast<int32_t>(i);
      }
    }
    if (cnt < k) {
#pragma omp atomic write
      short_row = r;
    }
  }
  CMOE_CHECK(short_row < 0, "topk_forward: row ", short_row, " has fewer than k = ", k,
             " unmasked entries");
}

// dx[n, indices[n, j]] = dvalues[n, j], 0 elsewhere
void topk_backward(Tensor& dx, const Tensor& dvalues, const Tensor& indices) {
  const int64_t n = dx.rows(), e = dx.cols(), k = indices.cols();
  check_rows(dx, n, e, DType::kF32, "topk_backward", "dx");
  check_rows(dvalues, n, k, DType::kF32, "topk_backward", "dvalues");
  check_rows(indices, n, k, DType::kI32, "topk_backward", "indices");
  float* pdx = dx.data<float>();               // (N, E)
  const float* pg = dvalues.data<float>();     // (N, k)
  const int32_t* pi = indices.data<int32_t>();  // (N, k)
#pragma omp parallel for schedule(static) if (n * e >= kParallelMin)
  for (int64_t r = 0; r < n; ++r) {
    std::memset(pdx + r * e, 0, static_cast<size_t>(e) * sizeof(float));
    for (int64_t j = 0; j < k; ++j) {
      const int32_t i = pi[r * k + j];
      CMOE_CHECK(i >= 0 && i < e, "topk_backward: index ", i, " at (", r, ", ", j, ") outside [0, ", e, ")");
      pdx[r * e + i] = pg[r * k + j];
    }
  }
}

}  // namespace cmoe::ops
