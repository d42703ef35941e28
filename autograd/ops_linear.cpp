// ops_linear.cpp — autograd wrappers for linear and grouped_linear.
//
// linear flattens x's leading dims to the kernel's 2-D (N, K) view and restores them on the
// result; backward computes dx and dw only for inputs that require grad.
#include "autograd/ops.h"
#include "core/profiler.h"
#include "autograd/op_table.h"

namespace cmoe::ag {

namespace {
// dx for the kernel to overwrite, or undefined when x gets no gradient.
Tensor dx_buffer(const VarImpl& x, const Tensor& like) {
  return x.requires_grad ? Tensor::empty(like.shape(), DType::kF32, like.device()) : Tensor();
}
// dw for the kernel to overwrite (accumulate_dw false: no zero fill, and the product writes
// without reading), or undefined when w gets no gradient.
Tensor dw_buffer(const VarImpl& w, const Tensor& like) {
  return w.requires_grad ? Tensor::empty(like.shape(), DType::kF32, like.device()) : Tensor();
}
}  // namespace

Var linear(const Var& x, const Var& w, DType compute_dtype) {
  prof::Span span("linear", prof::Cat::kOp);
  const Shape& xs = x.shape();
  CMOE_CHECK(xs.rank() >= 1 && w.shape().rank() == 2 && xs[xs.rank() - 1] == w.shape()[1],
             "linear: x (..., K) and w (M, K), got ", x.value().str(), ", ", w.value().str());
  const int64_t m = w.shape()[0], k = w.shape()[1], n = x.value().rows();
  Shape out_shape = xs;  // (..., M)
  out_shape[xs.rank() - 1] = m;
  // Rounded once here and kept for backward (bf16 compute): (N, K) and (M, K).
  const OpKernels& K = kernels(x.value().device());
  Tensor x2 = K.to_compute(x.value().view({n, k}), compute_dtype);
  Tensor wv = K.to_compute(w.value(), compute_dtype);
  Tensor out = Tensor::empty({n, m}, DType::kF32, x2.device());  // (N, M)
  K.linear_forward(out, x2, wv, compute_dtype);
  auto xi = x.impl(), wi = w.impl();
  Var result = make_result(out.view(out_shape), "linear", {x, w},
                     [xi, wi, x2, wv, xs, n, m, compute_dtype](const Tensor& g) {
                       Tensor dx = dx_buffer(*xi, x2), dw = dw_buffer(*wi, wv);
                       kernels(g.device()).linear_backward(dx, dw, g.view({n, m}), x2, wv, compute_dtype,
                                                                   /*accumulate_dw=*/false);
                       if (dx.defined()) accumulate_grad(*xi, dx.view(xs));
                       if (dw.defined()) accumulate_grad(*wi, dw);
                     });
  op_flops(result, "linear", 2.0 * n * m * k);
  return result;
}

Var grouped_linear(const Var& x, const Var& w, std::shared_ptr<const std::vector<int64_t>> offsets,
                   DType compute_dtype) {
  prof::Span span("grouped_linear", prof::Cat::kOp);
  CMOE_CHECK(offsets != nullptr, "grouped_linear: offsets are null");
  CMOE_CHECK(x.shape().rank() == 2 && w.shape().rank() == 3 && x.shape()[1] == w.shape()[2],
             "grouped_linear: x (R, K) and w (G, M, K), got ", x.value().str(), ", ",
             w.value().str());
  // Rounded once here and kept for backward (bf16 compute): (R, K) and (G, M, K).
  const OpKernels& K = kernels(x.value().device());
  Tensor xv = K.to_compute(x.value(), compute_dtype), wv = K.to_compute(w.value(), compute_dtype);
  Tensor out = Tensor::empty({xv.dim(0), wv.dim(1)}, DType::kF32, xv.device());  // (R, M)
  K.grouped_linear_forward(out, xv, wv, *offsets, compute_dtype);
  auto xi = x.impl(), wi = w.impl();
  Var result = make_result(out, "grouped_linear", {x, w},
                     [xi, wi, xv, wv, offsets, compute_dtype](const Tensor& g) {
                       Tensor dx = dx_buffer(*xi, xv), dw = dw_buffer(*wi, wv);
                       kernels(g.device()).grouped_linear_backward(dx, dw, g, xv, wv, *offsets, compute_dtype,
                                                                           /*accumulate_dw=*/false);
                       if (dx.defined()) accumulate_grad(*xi, dx);
                       if (dw.defined()) accumulate_grad(*wi, dw);
                     });
  op_flops(result, "grouped_linear", 2.0 * xv.dim(0) * wv.dim(1) * wv.dim(2));
  return result;
}

}  // namespace cmoe::ag
