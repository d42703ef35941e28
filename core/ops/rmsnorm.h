// rmsnorm.h — RMSNorm (Zhang & Sennrich 2019), statistics in f32.
#pragma once

#include "core/tensor.h"

namespace cmoe::ops {

// rstd[n] = 1 / sqrt(mean_d x[n,d]^2 + eps);  out[n,d] = x[n,d] * rstd[n] * w[d]
// x, out: (N, D) f32; w: (D) f32; rstd: (N) f32 (saved for backward)
void rmsnorm_forward(Tensor& out, Tensor& rstd, const Tensor& x, const Tensor& w, float eps);
// dx: (N, D) overwritten; dw: (D) accumulated (caller zeroes it); either may be undefined
void rmsnorm_backward(Tensor& dx, Tensor& dw, const Tensor& dout, const Tensor& x, const Tensor& w,
                      const Tensor& rstd);

}  // namespace cmoe::ops
