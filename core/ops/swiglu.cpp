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

CMOE_AVX512_TARGET void forward_span_avx512(float* out, const float* g, const float* u, int64_t n) {
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? static_cast<__mmask16>(0xffff) : cpu::tail_mask(n - i);
    const __m512 gv = _mm512_maskz_loadu_ps(m, g + i);
    const __m512 silu = _mm512_mul_ps(gv, cpu::sigmoid512(gv));
    _mm512_mask_storeu_ps(out + i, m, _mm512_mul_ps(silu, _mm512_maskz_loadu_ps(m, u + i)));
  }
}

CMOE_AVX512_TARGET void backward_span_avx512(float* dg, float* du, const float* dout, const float* g,
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

void check_out(const Tensor& t, int64_t numel, const char* op, const char* what) {
  CMOE_CHECK((t.dtype() == DType::kF32 || t.dtype() == DType::kBF16) && t.device().is_cpu() &&
                 t.numel() == numel,
             op, ": ", what, " is ", t.str(), ", want f32 or bf16 on CPU with ", numel, " elements");
}

// An output: f32 written in place, or bf16 through a per-thread f32 block rounded as it is
// filled (one pass over memory; the block stays in L1).
constexpr int64_t kBlock = 512;
struct Out {
  float* f32 = nullptr;
  bf16* b16 = nullptr;
  explicit Out(Tensor& t) {
    if (!t.defined()) return;
    if (t.dtype() == DType::kBF16) {
      b16 = t.data<bf16>();
    } else {
      f32 = t.data<float>();
    }
  }
  bool defined() const { return f32 != nullptr || b16 != nullptr; }
  // Where [b, b + len) is computed: the output itself, or the block.
  float* at(int64_t b, float* block) const {
    return f32 != nullptr ? f32 + b : b16 != nullptr ? block : nullptr;
  }
  void finish(int64_t b, int64_t len, const float* block) const {
    if (b16 != nullptr) cpu::f32_to_bf16_serial(b16 + b, block, len);
  }
};

// Runs body(b, len) over [0, n) in pieces of at most kBlock, kChunk of them per OpenMP work
// item, in parallel when there is more than one item.
template <typename Body>
void for_blocks(int64_t n, Body body) {
  const int64_t chunks = (n + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(static) if (chunks > 1)
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t end = std::min(n, (c + 1) * kChunk);
    for (int64_t b = c * kChunk; b < end; b += kBlock) body(b, std::min(kBlock, end - b));
  }
}

}  // namespace

// out = silu(gate) * up,  silu(z) = z / (1 + e^-z)
void swiglu_forward(Tensor& out, const Tensor& gate, const Tensor& up) {
  const int64_t n = gate.numel();
  check_f32(gate, n, "swiglu_forward", "gate");
  check_f32(up, n, "swiglu_forward", "up");
  check_out(out, n, "swiglu_forward", "out");
  const Out o(out);
  const float* pg = gate.data<float>();  // (N, F)
  const float* pu = up.data<float>();    // (N, F)
  const bool avx = cpu::has_avx512();
  for_blocks(n, [&](int64_t b, int64_t len) {
    alignas(64) float block[kBlock];
    float* dst = o.at(b, block);
    if (avx) {
      forward_span_avx512(dst, pg + b, pu + b, len);
    } else {
      forward_span(dst, pg + b, pu + b, len);
    }
    o.finish(b, len, block);
  });
}

// dgate = dout * up * sigmoid(g) (1 + g (1 - sigmoid(g)));  dup = dout * silu(g)
// Either output may be undefined when that input needs no gradient.
void swiglu_backward(Tensor& dgate, Tensor& dup, const Tensor& dout, const Tensor& gate,
                     const Tensor& up) {
  const int64_t n = gate.numel();
  check_f32(gate, n, "swiglu_backward", "gate");
  check_f32(up, n, "swiglu_backward", "up");
  check_f32(dout, n, "swiglu_backward", "dout");
  if (dgate.defined()) check_out(dgate, n, "swiglu_backward", "dgate");
  if (dup.defined()) check_out(dup, n, "swiglu_backward", "dup");
  const Out og(dgate), ou(dup);
  if (!og.defined() && !ou.defined()) return;
  const float* pd = dout.data<float>();  // (N, F)
  const float* pg = gate.data<float>();  // (N, F)
  const float* pu = up.data<float>();    // (N, F)
  const bool avx = cpu::has_avx512();
  for_blocks(n, [&](int64_t b, int64_t len) {
    alignas(64) float block_g[kBlock], block_u[kBlock];
    float* dg = og.at(b, block_g);
    float* du = ou.at(b, block_u);
    if (avx) {
      backward_span_avx512(dg, du, pd + b, pg + b, pu + b, len);
    } else {
      backward_span(dg, du, pd + b, pg + b, pu + b, len);
    }
    og.finish(b, len, block_g);
    ou.finish(b, len, block_u);
  });
}

}  // namespace cmoe::ops
