// avx512_math.h — inline AVX-512 vector math shared by the row kernels (swiglu, softmax,
// attention, cross-entropy): one exp for all of them.
//
// exp512 is a Cody–Waite range reduction (x = n ln2 + r, |r| <= ln2/2) with a degree-7 Taylor
// polynomial for e^r and _mm512_scalef_ps for the 2^n factor, which handles overflow to +inf
// and underflow through the denormals to 0 correctly. Max relative error 7.6e-8 (about 1 ulp;
// a dense sweep of the normal range against double exp); NaN propagates. GCC does not
// vectorise std::exp without -ffast-math (libmvec is only declared under __FAST_MATH__),
// hence this header.
//
// exp512(-inf) is exactly 0 (masked attention scores rely on it).
//
// Every function here carries target("avx512f"): call them only from functions that have it
// too (CMOE_AVX512_TARGET below), and only after cmoe::cpu::has_avx512() said yes.
#pragma once

// GCC 12 reports false "(may be) used uninitialized" warnings inside avx512fintrin.h
// (_mm512_undefined_* placeholders, e.g. in _mm512_reduce_add_ps); they are not about our code.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>

// Target attribute for the AVX-512 bodies chosen at run time by cpu::has_avx512().
#define CMOE_AVX512_TARGET __attribute__((target("avx512f,avx512bw")))

namespace cmoe::cpu {

// e^x per lane.
__attribute__((target("avx512f"), always_inline)) inline __m512 exp512(__m512 x) {
  // Below -104 the result rounds to 0, above 89 to +inf; clamping keeps n finite so r is
  // never inf - inf. max/min return their second operand on NaN, so NaN passes through.
  x = _mm512_max_ps(_mm512_set1_ps(-104.0f), x);
  x = _mm512_min_ps(_mm512_set1_ps(89.0f), x);
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  // ln2 split so n * kLn2Hi is exact for |n| < 2^15.
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.0f / 5040.0f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(p, n);
}

// sigmoid(z) = 1 / (1 + e^-z); exact division keeps it within a few ulp.
__attribute__((target("avx512f"), always_inline)) inline __m512 sigmoid512(__m512 z) {
  const __m512 one = _mm512_set1_ps(1.0f);
  return _mm512_div_ps(one, _mm512_add_ps(one, exp512(_mm512_sub_ps(_mm512_setzero_ps(), z))));
}

// Mask of the first n (< 16) lanes, for row tails.
__attribute__((target("avx512f"), always_inline)) inline __mmask16 tail_mask(int64_t n) {
  return static_cast<__mmask16>((1u << n) - 1u);
}

}  // namespace cmoe::cpu
