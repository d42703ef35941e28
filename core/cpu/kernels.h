// kernels.h — low-level CPU loops shared by the ops: dtype conversion and vector primitives.
// Each has an AVX-512 body (chosen at run time when the CPU supports it) and a portable one.
#pragma once

#include <cstdint>

#include "core/dtype.h"

namespace cmoe::cpu {

// True when this CPU runs the AVX-512F (and BF16 conversion, if has_avx512bf16: AVX512-BF16
// with AVX512DQ) paths.
bool has_avx512();
bool has_avx512bf16();

void f32_to_bf16(bf16* out, const float* in, int64_t n);  // round to nearest even
// The same on the calling thread only (for kernels that convert blocks inside their own
// parallel loops).
void f32_to_bf16_serial(bf16* out, const float* in, int64_t n);
void bf16_to_f32(float* out, const bf16* in, int64_t n);

}  // namespace cmoe::cpu
