// kernels.cpp — dtype conversion loops with run-time AVX-512 dispatch.
#include "core/cpu/kernels.h"

// GCC 12 reports false "may be used uninitialized" warnings inside avx512fintrin.h
// (_mm512_undefined_* placeholders); they are not about this file's code.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

namespace cmoe::cpu {

bool has_avx512() {
  static const bool v = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
  return v;
}

bool has_avx512bf16() {
  // AVX512DQ too: the conversion finds denormal blocks with VFPCLASSPS (every AVX512-BF16 CPU
  // has it).
  static const bool v = has_avx512() && __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512dq");
  return v;
}

namespace {

// The 16 lanes rounded to bf16 (nearest even, NaN stays a quiet NaN): cmoe::f32_to_bf16's bits.
__attribute__((target("avx512f"), always_inline)) inline __m256i to_bf16_512(__m512 v) {
  const __m512i u = _mm512_castps_si512(v), ones = _mm512_set1_epi32(1);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), ones);
  __m512i r = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(_mm512_set1_epi32(0x7fff), lsb)), 16);
  const __m512i exp_mask = _mm512_set1_epi32(0x7f800000);
  const __mmask16 is_nan = _mm512_cmpeq_epi32_mask(_mm512_and_si512(u, exp_mask), exp_mask) &
                           _mm512_test_epi32_mask(u, _mm512_set1_epi32(0x007fffff));
  r = _mm512_mask_mov_epi32(r, is_nan, _mm512_or_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40)));
  return _mm512_cvtepi32_epi16(r);
}

__attribute__((target("avx512f,avx512bw")))
void f32_to_bf16_avx512(bf16* out, const float* in, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), to_bf16_512(_mm512_loadu_ps(in + i)));
  }
  for (; i < n; ++i) out[i] = cmoe::f32_to_bf16(in[i]);
}

// VCVTNE2PS2BF16 rounds to nearest even and quiets NaNs exactly as f32_to_bf16() does, but
// takes denormal inputs as zero: a block of 32 with a denormal in it goes the integer way, so
// the bits are always f32_to_bf16()'s. One instruction per 32 values instead of about ten per 16.
__attribute__((target("avx512f,avx512bw,avx512dq,avx512bf16")))
void f32_to_bf16_avx512bf16(bf16* out, const float* in, int64_t n) {
  constexpr int kDenormal = 0x20;  // VFPCLASSPS category: denormal
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m512 lo = _mm512_loadu_ps(in + i), hi = _mm512_loadu_ps(in + i + 16);
    if ((_mm512_fpclass_ps_mask(lo, kDenormal) | _mm512_fpclass_ps_mask(hi, kDenormal)) == 0) {
      _mm512_storeu_si512(out + i, reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(hi, lo)));
    } else {
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), to_bf16_512(lo));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i + 16), to_bf16_512(hi));
    }
  }
  f32_to_bf16_avx512(out + i, in + i, n - i);
}

__attribute__((target("avx512f,avx512bw")))
void bf16_to_f32_avx512(float* out, const bf16* in, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(in + i));
    __m512i u = _mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16);
    _mm512_storeu_ps(out + i, _mm512_castsi512_ps(u));
  }
  for (; i < n; ++i) out[i] = cmoe::bf16_to_f32(in[i]);
}

}  // namespace

void f32_to_bf16_serial(bf16* out, const float* in, int64_t n) {
  if (has_avx512bf16()) {
    f32_to_bf16_avx512bf16(out, in, n);
  } else if (has_avx512()) {
    f32_to_bf16_avx512(out, in, n);
  } else {
    for (int64_t i = 0; i < n; ++i) out[i] = cmoe::f32_to_bf16(in[i]);
  }
}

void f32_to_bf16(bf16* out, const float* in, int64_t n) {
  constexpr int64_t kChunk = 1 << 16;
#pragma omp parallel for schedule(static) if (n > 4 * kChunk)
  for (int64_t c = 0; c < (n + kChunk - 1) / kChunk; ++c) {
    const int64_t b = c * kChunk, len = n - b < kChunk ? n - b : kChunk;
    f32_to_bf16_serial(out + b, in + b, len);
  }
}

void bf16_to_f32(float* out, const bf16* in, int64_t n) {
  constexpr int64_t kChunk = 1 << 16;
#pragma omp parallel for schedule(static) if (n > 4 * kChunk)
  for (int64_t c = 0; c < (n + kChunk - 1) / kChunk; ++c) {
    int64_t b = c * kChunk, len = n - b < kChunk ? n - b : kChunk;
    if (has_avx512()) {
      bf16_to_f32_avx512(out + b, in + b, len);
    } else {
      for (int64_t i = b; i < b + len; ++i) out[i] = cmoe::bf16_to_f32(in[i]);
    }
  }
}

}  // namespace cmoe::cpu
