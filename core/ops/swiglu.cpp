// swiglu.cpp — CPU SwiGLU forward/backward (see swiglu.h).
//
// Pure elementwise work over N*F values, split into fixed chunks for OpenMP. The AVX-512 body
// uses the polynomial exp of core/cpu/avx512_math.h (~1e-7 relative error); the portable body
// uses std::exp.
#include "core/ops/swiglu.h"

#include <algorithm>
#include <cmath>

#include "core/cpu/avx512_math.h"
#include "core/cpu/kernels.h"

namespace cmoe::ops {

namespace {

constexpr int64_t kChunk = 1 << 13;  // elements per OpenMP work item (32 KiB per stream)

// ---- portable bodies ----------------------------------------------------------------------

void forward_span(float* out, const float* g, const float* u, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float s = 1.0f / (1.0f + std::exp(-g[i]));
    out[i] = g[i] * s * u[i];
  }
}

// silu'(g) = s (1 + g (1 - s)) with s = sigmoid(g)
void backward_span(float* dg, float* du, const float* dout, const float* g, const float* u,
                   int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float s = 1.0f / (1.0f + std::exp(-g[i]));
    if (dg != nullptr) dg[i] = dout[i] * u[i] * (s * (1.0f + g[i] * (1.0f - s)));
    if (du != nullptr) du[i] = dout[i] * (g[i] * s);
  }
}

// ---- AVX-512 bodies -----------------------------------------------------------------------

__attribute__((target("avx512f"))) void forward_span_avx512(float* out, const float* g,
                                                            const float* u, int64_t n) {
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? static_cast<__mmask16>(0xffff) : cpu::tail_mask(n - i);
    const __m512 gv = _mm512_maskz_loadu_ps(m, g + i);
    const __m512 silu = _mm512_mul_ps(gv, cpu::sigmoid512(gv));
    _mm512_mask_storeu_ps(out + i, m, _mm512_mul_ps(silu, _mm512_maskz_loadu_ps(m, u + i)));
  }
}

__attribute__((target("avx512f"))) void backward_span_avx512(float* dg, float* du,
                                                             const float* dout, const float* g,
                                                             const float* u, int64_t n) {
  const __m512 one = _mm512_set1_ps(1.0f);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? static_cast<__mmask16>(0xffff) : cpu::tail_mask(n - i);
    const __m512 gv = _mm512_maskz_loadu_ps(m, g + i), dv = _mm512_maskz_loadu_ps(m, dout + i);
    const __m512 s = cpu::sigmoid512(gv);
    if (dg != nullptr) {
      // dsilu = s * (1 + g * (1 - s))
      const __m512 dsilu = _mm512_mul_ps(s, _mm512_fmadd_ps(gv, _mm512_sub_ps(one, s), one));
      const __m512 v = _mm512_mul_ps(_mm512_mul_ps(dv, _mm512_maskz_loadu_ps(m, u + i)), dsilu);
      _mm512_mask_storeu_ps(dg + i, m, v);
    }
    if (du != nullptr) _mm512_mask_storeu_ps(du + i, m, _mm512_mul_ps(dv, _mm512_mul_ps(gv, s)));
  }
}

void check_f32(const Tensor& t, int64_t numel, const char* op, const char* what) {
  CMOE_CHECK(t.dtype() == DType::kF32 && t.device().is_cpu() && t.numel() == numel, op, ": ", what,
             " is ", t.str(), ", want f32 on CPU with ", numel, " elements");
}

}  // namespace

// out = silu(gate) * up,  silu(z) = z / (1 + e^-z)
void swiglu_forward(Tensor& out, const Tensor& gate, const Tensor& up) {
  const int64_t n = gate.numel();
  check_f32(gate, n, "swiglu_forward", "gate");
  check_f32(up, n, "swiglu_forward", "up");
  check_f32(out, n, "swiglu_forward", "out");
  float* po = out.data<float>();        // (N, F)
  const float* pg = gate.data<float>();  // (N, F)
  const float* pu = up.data<float>();    // (N, F)
  const bool avx = cpu::has_avx512();
  const int64_t chunks = (n + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(static) if (chunks > 1)
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t b = c * kChunk, len = std::min(kChunk, n - b);
    if (avx) {
      forward_span_avx512(po + b, pg + b, pu + b, len);
    } else {
      forward_span(po + b, pg + b, pu + b, len);
    }
  }
}

// dgate = dout * up * sigmoid(g) (1 + g (1 - sigmoid(g)));  dup = dout * silu(g)
// Either output may be undefined when that input needs no gradient.
void swiglu_backward(Tensor& dgate, Tensor& dup, const Tensor& dout, const Tensor& gate,
                     const Tensor& up) {
  const int64_t n = gate.numel();
  check_f32(gate, n, "swiglu_backward", "gate");
  check_f32(up, n, "swiglu_backward", "up");
  check_f32(dout, n, "swiglu_backward", "dout");
  float* pdg = nullptr;  // (N, F)
  float* pdu = nullptr;  // (N, F)
  if (dgate.defined()) {
    check_f32(dgate, n, "swiglu_backward", "dgate");
    pdg = dgate.data<float>();
  }
  if (dup.defined()) {
    check_f32(dup, n, "swiglu_backward", "dup");
    pdu = dup.data<float>();
  }
  if (pdg == nullptr && pdu == nullptr) return;
  const float* pd = dout.data<float>();  // (N, F)
  const float* pg = gate.data<float>();  // (N, F)
  const float* pu = up.data<float>();    // (N, F)
  const bool avx = cpu::has_avx512();
  const int64_t chunks = (n + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(static) if (chunks > 1)
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t b = c * kChunk, len = std::min(kChunk, n - b);
    float* dg = pdg != nullptr ? pdg + b : nullptr;
    float* du = pdu != nullptr ? pdu + b : nullptr;
    if (avx) {
      backward_span_avx512(dg, du, pd + b, pg + b, pu + b, len);
    } else {
      backward_span(dg, du, pd + b, pg + b, pu + b, len);
    }
  }
}

}  // namespace cmoe::ops
