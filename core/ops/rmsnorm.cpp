// rmsnorm.cpp — CPU RMSNorm forward/backward (see rmsnorm.h).
//
// Rows are independent, so both passes run OpenMP over rows with AVX-512 row loops (a portable
// loop otherwise). Statistics are f32 sums over 16 lanes, which for D in the thousands keeps
// the relative error near 1e-7. dw is a column sum over rows: each fixed block of kDwRows rows
// writes its own partial, and the partials are added in block order, so dw is bitwise the
// same for any thread count.
#include "core/ops/rmsnorm.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/cpu/avx512_math.h"
#include "core/cpu/kernels.h"

namespace cmoe::ops {

namespace {

constexpr int64_t kDwRows = 32;            // rows per dw partial
constexpr int64_t kParallelMin = 1 << 14;  // elements below which threads cost more than they save

// ---- portable row loops -------------------------------------------------------------------

float sum_squares_row(const float* x, int64_t d) {
  float s = 0.0f;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < d; ++i) s += x[i] * x[i];
  return s;
}

void forward_row(float* out, const float* x, const float* w, float r, int64_t d) {
#pragma omp simd
  for (int64_t i = 0; i < d; ++i) out[i] = x[i] * r * w[i];
}

// dx = r * (dout*w - x * r^2 * mean(dout*w*x));  dw_part += dout * x * r
void backward_row(float* dx, float* dw_part, const float* dout, const float* x, const float* w,
                  float r, int64_t d) {
  float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
  for (int64_t i = 0; i < d; ++i) dot += dout[i] * w[i] * x[i];
  const float c = r * r * dot / static_cast<float>(d);
  if (dx != nullptr) {
#pragma omp simd
    for (int64_t i = 0; i < d; ++i) dx[i] = r * (dout[i] * w[i] - x[i] * c);
  }
  if (dw_part != nullptr) {
#pragma omp simd
    for (int64_t i = 0; i < d; ++i) dw_part[i] += dout[i] * x[i] * r;
  }
}

// ---- AVX-512 row loops --------------------------------------------------------------------

__attribute__((target("avx512f"))) float sum_squares_row_avx512(const float* x, int64_t d) {
  __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 32 <= d; i += 32) {
    __m512 v0 = _mm512_loadu_ps(x + i), v1 = _mm512_loadu_ps(x + i + 16);
    a0 = _mm512_fmadd_ps(v0, v0, a0);
    a1 = _mm512_fmadd_ps(v1, v1, a1);
  }
  for (; i < d; i += 16) {
    const __mmask16 m = d - i >= 16 ? static_cast<__mmask16>(0xffff) : cpu::tail_mask(d - i);
    __m512 v = _mm512_maskz_loadu_ps(m, x + i);
    a0 = _mm512_fmadd_ps(v, v, a0);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
}

__attribute__((target("avx512f"))) void forward_row_avx512(float* out, const float* x,
                                                           const float* w, float r, int64_t d) {
  const __m512 vr = _mm512_set1_ps(r);
  for (int64_t i = 0; i < d; i += 16) {
    const __mmask16 m = d - i >= 16 ? static_cast<__mmask16>(0xffff) : cpu::tail_mask(d - i);
    __m512 v = _mm512_mul_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), vr),
                             _mm512_maskz_loadu_ps(m, w + i));
    _mm512_mask_storeu_ps(out + i, m, v);
  }
}

__attribute__((target("avx512f"))) void backward_row_avx512(float* dx, float* dw_part,
                                                            const float* dout, const float* x,
                                                            const float* w, float r, int64_t d) {
  __m512 acc = _mm512_setzero_ps();
  for (int64_t i = 0; i < d; i += 16) {
    const __mmask16 m = d - i >= 16 ? static_cast<__mmask16>(0xffff) : cpu::tail_mask(d - i);
    __m512 gw = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, dout + i), _mm512_maskz_loadu_ps(m, w + i));
    acc = _mm512_fmadd_ps(gw, _mm512_maskz_loadu_ps(m, x + i), acc);
  }
  const float c = r * r * _mm512_reduce_add_ps(acc) / static_cast<float>(d);
  const __m512 vr = _mm512_set1_ps(r), vc = _mm512_set1_ps(c);
  for (int64_t i = 0; i < d; i += 16) {
    const __mmask16 m = d - i >= 16 ? static_cast<__mmask16>(0xffff) : cpu::tail_mask(d - i);
    const __m512 g = _mm512_maskz_loadu_ps(m, dout + i), xv = _mm512_maskz_loadu_ps(m, x + i);
    if (dx != nullptr) {
      __m512 t = _mm512_fnmadd_ps(xv, vc, _mm512_mul_ps(g, _mm512_maskz_loadu_ps(m, w + i)));
      _mm512_mask_storeu_ps(dx + i, m, _mm512_mul_ps(vr, t));
    }
    if (dw_part != nullptr) {
      __m512 p = _mm512_maskz_loadu_ps(m, dw_part + i);
      _mm512_mask_storeu_ps(dw_part + i, m, _mm512_fmadd_ps(_mm512_mul_ps(g, xv), vr, p));
    }
  }
}

void check_cpu_f32(const Tensor& t, const char* what) {
  CMOE_CHECK(t.dtype() == DType::kF32 && t.device().is_cpu(), "rmsnorm: ", what, " is ", t.str(),
             ", want f32 on CPU");
}

}  // namespace

// rstd[n] = 1 / sqrt(mean_d x[n,d]^2 + eps);  out[n,d] = x[n,d] * rstd[n] * w[d]
void rmsnorm_forward(Tensor& out, Tensor& rstd, const Tensor& x, const Tensor& w, float eps) {
  check_cpu_f32(out, "out");
  check_cpu_f32(rstd, "rstd");
  check_cpu_f32(x, "x");
  check_cpu_f32(w, "w");
  const int64_t n = x.rows(), d = x.cols();
  CMOE_CHECK(out.numel() == n * d && w.numel() == d && rstd.numel() == n, "rmsnorm_forward: out ",
             out.str(), " rstd ", rstd.str(), " x ", x.str(), " w ", w.str());
  float* po = out.data<float>();  // (N, D)
  float* pr = rstd.data<float>();  // (N)
  const float* px = x.data<float>();  // (N, D)
  const float* pw = w.data<float>();  // (D)
  const bool avx = cpu::has_avx512();
#pragma omp parallel for schedule(static) if (n * d >= kParallelMin)
  for (int64_t row = 0; row < n; ++row) {
    const float* xr = px + row * d;
    const float ss = avx ? sum_squares_row_avx512(xr, d) : sum_squares_row(xr, d);
    const float r = 1.0f / std::sqrt(ss / static_cast<float>(d) + eps);
    pr[row] = r;
    if (avx) {
      forward_row_avx512(po + row * d, xr, pw, r, d);
    } else {
      forward_row(po + row * d, xr, pw, r, d);
    }
  }
}

// dx[n,:] = rstd * (dout*w - x * rstd^2 * mean_d(dout*w*x));  dw[d] += sum_n dout*x*rstd
// Either of dx (overwritten) or dw (accumulated) may be undefined when not needed.
void rmsnorm_backward(Tensor& dx, Tensor& dw, const Tensor& dout, const Tensor& x, const Tensor& w,
                      const Tensor& rstd) {
  check_cpu_f32(dout, "dout");
  check_cpu_f32(x, "x");
  check_cpu_f32(w, "w");
  check_cpu_f32(rstd, "rstd");
  const int64_t n = x.rows(), d = x.cols();
  CMOE_CHECK(dout.numel() == n * d && w.numel() == d && rstd.numel() == n, "rmsnorm_backward: dout ",
             dout.str(), " x ", x.str(), " w ", w.str(), " rstd ", rstd.str());
  float* pdx = nullptr;  // (N, D)
  if (dx.defined()) {
    check_cpu_f32(dx, "dx");
    CMOE_CHECK(dx.numel() == n * d, "rmsnorm_backward: dx ", dx.str(), " for x ", x.str());
    pdx = dx.data<float>();
  }
  float* pdw = nullptr;  // (D)
  if (dw.defined()) {
    check_cpu_f32(dw, "dw");
    CMOE_CHECK(dw.numel() == d, "rmsnorm_backward: dw ", dw.str(), " for x ", x.str());
    pdw = dw.data<float>();
  }
  if (pdx == nullptr && pdw == nullptr) return;
  const float* pg = dout.data<float>();  // (N, D)
  const float* px = x.data<float>();     // (N, D)
  const float* pw = w.data<float>();     // (D)
  const float* pr = rstd.data<float>();  // (N)
  const int64_t blocks = (n + kDwRows - 1) / kDwRows;
  std::vector<float> partial(pdw != nullptr ? static_cast<size_t>(blocks * d) : 0, 0.0f);  // (blocks, D)
  const bool avx = cpu::has_avx512();
#pragma omp parallel for schedule(static) if (n * d >= kParallelMin)
  for (int64_t b = 0; b < blocks; ++b) {
    float* part = pdw != nullptr ? partial.data() + b * d : nullptr;
    for (int64_t row = b * kDwRows; row < std::min(n, (b + 1) * kDwRows); ++row) {
      float* dxr = pdx != nullptr ? pdx + row * d : nullptr;
      if (avx) {
        backward_row_avx512(dxr, part, pg + row * d, px + row * d, pw, pr[row], d);
      } else {
        backward_row(dxr, part, pg + row * d, px + row * d, pw, pr[row], d);
      }
    }
  }
  if (pdw == nullptr) return;
  // Column sums of the partials in block order: deterministic whatever the thread count.
#pragma omp parallel for schedule(static) if (blocks * d >= kParallelMin)
  for (int64_t c0 = 0; c0 < d; c0 += 64) {
    const int64_t c1 = std::min(d, c0 + 64);
    for (int64_t b = 0; b < blocks; ++b) {
      const float* part = partial.data() + b * d;
#pragma omp simd
      for (int64_t c = c0; c < c1; ++c) pdw[c] += part[c];
    }
  }
}

}  // namespace cmoe::ops
