// linear.cpp — dense and expert (grouped) linear layers over the oneDNN matmuls in matmul.cpp.
//
// With compute dtype kBF16, x, w and (in backward) dout are rounded to bf16 before each matmul,
// as mixed-precision frameworks do; the matmul accumulates in f32 and every output and gradient
// is f32. Inputs that are already bf16 are used as they are: the autograd layer rounds x and w
// once in forward and keeps the bf16 copies for backward (half the saved bytes, two fewer
// rounding passes per layer).
#include "core/ops/linear.h"

#include "core/cpu/kernels.h"
#include "core/ops/matmul.h"

namespace cmoe::ops {

Tensor to_compute(const Tensor& t, DType compute_dtype) {
  CMOE_CHECK(compute_dtype == DType::kF32 || compute_dtype == DType::kBF16,
             "linear: compute dtype must be f32 or bf16, got ", dtype_name(compute_dtype));
  if (t.dtype() == compute_dtype) return t;
  CMOE_CHECK(t.dtype() == DType::kF32, "linear: inputs are f32 or ", dtype_name(compute_dtype), ", got ", t.str());
  Tensor r = Tensor::empty(t.shape(), DType::kBF16, t.device());
  cpu::f32_to_bf16(r.data<bf16>(), t.data<float>(), t.numel());
  return r;
}

// out = x @ w^T
void linear_forward(Tensor& out, const Tensor& x, const Tensor& w, DType compute_dtype) {
  CMOE_CHECK(x.rank() == 2 && w.rank() == 2 && x.dim(1) == w.dim(1),
             "linear_forward: x (N, K) and w (M, K), got ", x.str(), ", ", w.str());
  Tensor xc = to_compute(x, compute_dtype);  // (N, K)
  Tensor wc = to_compute(w, compute_dtype);  // (M, K)
  matmul(out, xc, wc, /*trans_a=*/false, /*trans_b=*/true);
}

// dx = dout @ w;  dw (+)= dout^T @ x   (either output skipped when undefined)
void linear_backward(Tensor& dx, Tensor& dw, const Tensor& dout, const Tensor& x, const Tensor& w,
                     DType compute_dtype, bool accumulate_dw) {
  CMOE_CHECK(dout.rank() == 2 && x.rank() == 2 && w.rank() == 2 && dout.dim(0) == x.dim(0) &&
                 dout.dim(1) == w.dim(0) && x.dim(1) == w.dim(1),
             "linear_backward: dout (N, M), x (N, K), w (M, K), got ", dout.str(), ", ", x.str(),
             ", ", w.str());
  if (!dx.defined() && !dw.defined()) return;
  Tensor doutc = to_compute(dout, compute_dtype);  // (N, M)
  if (dx.defined()) matmul(dx, doutc, to_compute(w, compute_dtype), false, false);
  if (dw.defined()) {
    matmul(dw, doutc, to_compute(x, compute_dtype), true, false, 1.0f, accumulate_dw ? 1.0f : 0.0f);
  }
}

// out[seg g] = x[seg g] @ w[g]^T
void grouped_linear_forward(Tensor& out, const Tensor& x, const Tensor& w,
                            std::span<const int64_t> offsets, DType compute_dtype) {
  CMOE_CHECK(x.rank() == 2 && w.rank() == 3 && x.dim(1) == w.dim(2),
             "grouped_linear_forward: x (R, K) and w (G, M, K), got ", x.str(), ", ", w.str());
  Tensor xc = to_compute(x, compute_dtype);  // (R, K)
  Tensor wc = to_compute(w, compute_dtype);  // (G, M, K)
  grouped_matmul(out, xc, wc, offsets, /*trans_w=*/true);
}

// dx[seg g] = dout[seg g] @ w[g];  dw[g] (+)= dout[seg g]^T @ x[seg g]   (skipped when undefined)
void grouped_linear_backward(Tensor& dx, Tensor& dw, const Tensor& dout, const Tensor& x,
                             const Tensor& w, std::span<const int64_t> offsets,
                             DType compute_dtype, bool accumulate_dw) {
  CMOE_CHECK(dout.rank() == 2 && x.rank() == 2 && w.rank() == 3 && dout.dim(0) == x.dim(0) &&
                 dout.dim(1) == w.dim(1) && x.dim(1) == w.dim(2),
             "grouped_linear_backward: dout (R, M), x (R, K), w (G, M, K), got ", dout.str(), ", ",
             x.str(), ", ", w.str());
  if (!dx.defined() && !dw.defined()) return;
  Tensor doutc = to_compute(dout, compute_dtype);  // (R, M)
  if (dx.defined()) grouped_matmul(dx, doutc, to_compute(w, compute_dtype), offsets, false);
  if (dw.defined()) {
    grouped_matmul_grad_w(dw, to_compute(x, compute_dtype), doutc, offsets, /*trans_w=*/true,
                          accumulate_dw);
  }
}

}  // namespace cmoe::ops
