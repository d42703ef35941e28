// vec_exp.h — inline AVX-512 exp(x) for the fused softmax-style kernels (attention, cross-entropy).
//
// Cephes expf: x = n ln2 + r with |r| <= ln2/2, exp(r) by a degree-6 polynomial, 2^n applied
// with vscalefps (exact, and no integer bit tricks). Max relative error ~2 ulp over the normal
// range; exp(x) = 0 for x < -87.3 (including -inf, the masked scores), +inf for x > 88.7, and
// NaN stays NaN. Include only from .cpp files whose AVX-512 functions carry kAvx512Target.
#pragma once

// GCC 12 reports false "(may be) used uninitialized" warnings inside avx512fintrin.h
// (the self-initialised _mm512_undefined_* placeholders); they are not about cmoe's code.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>

// Target attribute for the AVX-512 bodies chosen at run time by cpu::has_avx512().
#define CMOE_AVX512_TARGET __attribute__((target("avx512f,avx512bw")))

namespace cmoe::cpu {

CMOE_AVX512_TARGET inline __m512 exp512(__m512 x) {
  const __m512 lo = _mm512_set1_ps(-87.3365f), hi = _mm512_set1_ps(89.0f);
  // Lanes below the underflow bound give exactly 0; NaN lanes compare unordered and stay live.
  const __mmask16 live = _mm512_cmp_ps_mask(x, lo, _CMP_NLT_UQ);
  x = _mm512_min_ps(hi, _mm512_max_ps(lo, x));  // (bound, x) order keeps a NaN x
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  const __m512 y = _mm512_add_ps(_mm512_fmadd_ps(_mm512_mul_ps(p, r), r, r), _mm512_set1_ps(1.0f));
  return _mm512_maskz_mov_ps(live, _mm512_scalef_ps(y, n));
}

}  // namespace cmoe::cpu
