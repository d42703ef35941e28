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
  static const bool v = has_avx512() && __builtin_cpu_supports("avx512bf16");
  return v;
}

namespace {

__attribute__((target("avx512f,avx512bw")))
void f32_to_bf16_avx512(bf16* out, const float* in, int64_t n) {
  // Round to nearest even on the bit pattern, quiet NaNs, as f32_to_bf16() does.
  const __m512i ones = _mm512_set1_epi32(1), bias = _mm512_set1_epi32(0x7fff);
  const __m512i exp_mask = _mm512_set1_epi32(0x7f800000), man_mask = _mm512_set1_epi32(0x007fffff);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m512i u = _mm512_castps_si512(_mm512_loadu_ps(in + i));
    __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), ones);
    __m512i r = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(bias, lsb)), 16);
    __mmask16 is_nan = _mm512_cmpeq_epi32_mask(_mm512_and_si512(u, exp_mask), exp_mask) &
                       _mm512_test_epi32_mask(u, man_mask);
    r = _mm512_mask_mov_epi32(r, is_nan, _mm512_or_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40)));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), _mm512_cvtepi32_epi16(r));
  }
  for (; i < n; ++i) out[i] = cmoe::f32_to_bf16(in[i]);
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

void f32_to_bf16(bf16* out, const float* in, int64_t n) {
  constexpr int64_t kChunk = 1 << 16;
#pragma omp parallel for schedule(static) if (n > 4 * kChunk)
  for (int64_t c = 0; c < (n + kChunk - 1) / kChunk; ++c) {
    int64_t b = c * kChunk, len = n - b < kChunk ? n - b : kChunk;
    if (has_avx512()) {
      f32_to_bf16_avx512(out + b, in + b, len);
    } else {
      for (int64_t i = b; i < b + len; ++i) out[i] = cmoe::f32_to_bf16(in[i]);
    }
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
