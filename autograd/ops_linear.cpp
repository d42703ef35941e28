// ops_linear.cpp — autograd wrappers for linear and grouped_linear.
//
// linear flattens x's leading dims to the kernel's 2-D (N, K) view and restores them on the
// result; backward computes dx and dw only for inputs that require grad.
#include "autograd/ops.h"
#include "core/ops/linear.h"

namespace cmoe::ag {

Var linear(const Var& x, const Var& w, DType compute_dtype) {
  const Shape& xs = x.shape();
  CMOE_CHECK(xs.rank() >= 1 && w.shape().rank() == 2 && xs[xs.rank() - 1] == w.shape()[1],
             "linear: x (..., K) and w (M, K), got ", x.value().str(), ", ", w.value().str());
  const int64_t k = w.shape()[1], m = w.shape()[0];
  const int64_t n = x.value().rows();
  Shape out_shape = xs;
  out_shape[xs.rank() - 1] = m;
  Tensor x2 = x.value().view({n, k});                           // (N, K)
  Tensor out = Tensor::empty({n, m}, DType::kF32, x2.device());  // (N, M)
  ops::linear_forward(out, x2, w.value(), compute_dtype);
  auto xi = x.impl(), wi = w.impl();
  Tensor wv = w.value();
  return make_result(out.view(out_shape), "linear", {x, w},
                     [xi, wi, x2, wv, xs, n, m, compute_dtype](const Tensor& g) {
                       Tensor dx = xi->requires_grad ? Tensor::empty(x2.shape(), DType::kF32, x2.device())
                                                     : Tensor();
                       Tensor dw = wi->requires_grad ? Tensor::zeros(wv.shape(), DType::kF32, wv.device())
                                                     : Tensor();
                       ops::linear_backward(dx, dw, g.view({n, m}), x2, wv, compute_dtype);
                       if (dx.defined()) accumulate_grad(*xi, dx.view(xs));
                       if (dw.defined()) accumulate_grad(*wi, dw);
                     });
}

Var grouped_linear(const Var& x, const Var& w, std::shared_ptr<const std::vector<int64_t>> offsets,
                   DType compute_dtype) {
  CMOE_CHECK(offsets != nullptr, "grouped_linear: offsets are null");
  CMOE_CHECK(x.shape().rank() == 2 && w.shape().rank() == 3 && x.shape()[1] == w.shape()[2],
             "grouped_linear: x (R, K) and w (G, M, K), got ", x.value().str(), ", ",
             w.value().str());
  Tensor out = Tensor::empty({x.shape()[0], w.shape()[1]}, DType::kF32, x.value().device());  // (R, M)
  ops::grouped_linear_forward(out, x.value(), w.value(), *offsets, compute_dtype);
  auto xi = x.impl(), wi = w.impl();
  Tensor xv = x.value(), wv = w.value();
  return make_result(out, "grouped_linear", {x, w},
                     [xi, wi, xv, wv, offsets, compute_dtype](const Tensor& g) {
                       Tensor dx = xi->requires_grad ? Tensor::empty(xv.shape(), DType::kF32, xv.device())
                                                     : Tensor();
                       Tensor dw = wi->requires_grad ? Tensor::zeros(wv.shape(), DType::kF32, wv.device())
                                                     : Tensor();
                       ops::grouped_linear_backward(dx, dw, g, xv, wv, *offsets, compute_dtype);
                       if (dx.defined()) accumulate_grad(*xi, dx);
                       if (dw.defined()) accumulate_grad(*wi, dw);
                     });
}

}  // namespace cmoe::ag
