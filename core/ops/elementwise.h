// elementwise.h — vectorised elementwise and reduction kernels on CPU f32 tensors.
// AVX-512 where the CPU has it (checked at run time), a portable loop otherwise.
#pragma once

#include "core/tensor.h"

namespace cmoe::ops {

// out = a + b  (same shape; out may alias a or b)
void add_forward(Tensor& out, const Tensor& a, const Tensor& b);
// da = dout, db = dout (copies; either may be undefined to skip it)
void add_backward(Tensor& da, Tensor& db, const Tensor& dout);

// out = a * b  (same shape)
void mul_forward(Tensor& out, const Tensor& a, const Tensor& b);
// da = dout * b, db = dout * a (either may be undefined to skip it)
void mul_backward(Tensor& da, Tensor& db, const Tensor& dout, const Tensor& a, const Tensor& b);

// out = s * x
void scale_forward(Tensor& out, const Tensor& x, float s);
// dx = s * dout
void scale_backward(Tensor& dx, const Tensor& dout, float s);

// out (scalar, shape ()) = sum_i x[i]   (f64 accumulation)
void sum_forward(Tensor& out, const Tensor& x);
// dx[i] = dout[0]
void sum_backward(Tensor& dx, const Tensor& dout);

// out[n, :] = s[n] * x[n, :]          x, out: (N, D); s: (N)
void scale_rows_forward(Tensor& out, const Tensor& x, const Tensor& s);
// dx[n, :] = s[n] * dout[n, :];  ds[n] = dout[n, :] . x[n, :]   (either may be undefined)
void scale_rows_backward(Tensor& dx, Tensor& ds, const Tensor& dout, const Tensor& x, const Tensor& s);

// out[n, :] = x[n, :] + b              x, out: (N, C); b: (C)
void add_bias_forward(Tensor& out, const Tensor& x, const Tensor& b);
// dx = dout (skipped if undefined); db[c] += sum_n dout[n, c] (accumulated)
void add_bias_backward(Tensor& dx, Tensor& db, const Tensor& dout);

// y += a * x  (f32, same numel)
void axpy(Tensor& y, float a, const Tensor& x);
// sum_i x[i]^2 in f64 (gradient-norm building block)
double sum_squares(const Tensor& x);

}  // namespace cmoe::ops
