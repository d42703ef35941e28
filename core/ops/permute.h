// permute.h — token permutation for MoE dispatch: gather rows by index, weighted scatter-add.
#pragma once

#include "core/tensor.h"

namespace cmoe::ops {

// out[m, :] = x[idx[m], :]              out: (M, D) f32; x: (N, D) f32; idx: (M) i32 in [0, N)
void gather_rows_forward(Tensor& out, const Tensor& x, const Tensor& idx);
// dx[idx[m], :] += dout[m, :]           dx: (N, D), accumulated (caller zeroes it)
void gather_rows_backward(Tensor& dx, const Tensor& dout, const Tensor& idx);

// out[idx[m], :] += w[m] * y[m, :]      out: (N, D) f32 accumulated (caller zeroes it);
// y: (M, D) f32; idx: (M) i32; w: (M) f32. Deterministic: rows are summed in m order.
void scatter_add_rows_forward(Tensor& out, const Tensor& y, const Tensor& idx, const Tensor& w);
// dy[m, :] = w[m] * dout[idx[m], :];  dw[m] = dout[idx[m], :] . y[m, :]  (either may be undefined)
void scatter_add_rows_backward(Tensor& dy, Tensor& dw, const Tensor& dout, const Tensor& y,
                               const Tensor& idx, const Tensor& w);

}  // namespace cmoe::ops
