// ops_elementwise.cpp — autograd wrappers for add, mul, scale, sum, reshape.
#include "autograd/ops.h"
#include "core/profiler.h"
#include "autograd/op_table.h"

namespace cmoe::ag {

namespace {
Tensor like(const Tensor& t) { return Tensor::empty(t.shape(), DType::kF32, t.device()); }
const OpKernels& K(const Tensor& t) { return kernels(t.device()); }
}  // namespace

Var add(const Var& a, const Var& b) {
  prof::Span span("add", prof::Cat::kOp);
  CMOE_CHECK(a.shape() == b.shape(), "add: ", a.value().str(), " + ", b.value().str());
  Tensor out = like(a.value());
  K(out).add_forward(out, a.value(), b.value());
  auto ai = a.impl(), bi = b.impl();
  return make_result(out, "add", {a, b}, [ai, bi](const Tensor& g) {
    // Both inputs receive the same gradient tensor; accumulate_grad never writes into it.
    accumulate_grad(*ai, g);
    accumulate_grad(*bi, g);
  });
}

Var mul(const Var& a, const Var& b) {
  prof::Span span("mul", prof::Cat::kOp);
  CMOE_CHECK(a.shape() == b.shape(), "mul: ", a.value().str(), " * ", b.value().str());
  Tensor out = like(a.value());
  K(out).mul_forward(out, a.value(), b.value());
  auto ai = a.impl(), bi = b.impl();
  Tensor av = a.value(), bv = b.value();
  return make_result(out, "mul", {a, b}, [ai, bi, av, bv](const Tensor& g) {
    Tensor da = ai->requires_grad ? like(av) : Tensor();
    Tensor db = bi->requires_grad ? like(bv) : Tensor();
    K(g).mul_backward(da, db, g, av, bv);
    if (da.defined()) accumulate_grad(*ai, da);
    if (db.defined()) accumulate_grad(*bi, db);
  });
}

Var scale(const Var& x, float s) {
  prof::Span span("scale", prof::Cat::kOp);
  Tensor out = like(x.value());
  K(out).scale_forward(out, x.value(), s);
  auto xi = x.impl();
  return make_result(out, "scale", {x}, [xi, s](const Tensor& g) {
    Tensor dx = like(g);
    K(g).scale_backward(dx, g, s);
    accumulate_grad(*xi, dx);
  });
}

Var scale_rows(const Var& x, const Var& s) {
  prof::Span span("scale_rows", prof::Cat::kOp);
  CMOE_CHECK(s.value().numel() == x.value().rows(), "scale_rows: ", s.value().str(), " for ", x.value().str());
  Tensor out = like(x.value());
  K(out).scale_rows_forward(out, x.value(), s.value());
  auto xi = x.impl(), si = s.impl();
  Tensor xv = x.value(), sv = s.value();
  return make_result(out, "scale_rows", {x, s}, [xi, si, xv, sv](const Tensor& g) {
    Tensor dx = xi->requires_grad ? like(xv) : Tensor();
    Tensor ds = si->requires_grad ? like(sv) : Tensor();
    K(g).scale_rows_backward(dx, ds, g, xv, sv);
    if (dx.defined()) accumulate_grad(*xi, dx);
    if (ds.defined()) accumulate_grad(*si, ds);
  });
}

Var add_bias(const Var& x, const Var& b) {
  prof::Span span("add_bias", prof::Cat::kOp);
  CMOE_CHECK(b.value().numel() == x.value().cols(), "add_bias: ", b.value().str(), " for ", x.value().str());
  Tensor out = like(x.value());
  K(out).add_bias_forward(out, x.value(), b.value());
  auto xi = x.impl(), bi = b.impl();
  return make_result(out, "add_bias", {x, b}, [xi, bi](const Tensor& g) {
    // dx = g: handed to x as is, so the kernel's dx output is left undefined (skipped).
    Tensor no_dx, db = Tensor::zeros(bi->value.shape(), DType::kF32, g.device());
    K(g).add_bias_backward(no_dx, db, g);
    accumulate_grad(*xi, g);
    accumulate_grad(*bi, db);
  });
}

Var sum(const Var& x) {
  prof::Span span("sum", prof::Cat::kOp);
  Tensor out = Tensor::empty(Shape{}, DType::kF32, x.value().device());
  K(out).sum_forward(out, x.value());
  auto xi = x.impl();
  return make_result(out, "sum", {x}, [xi](const Tensor& g) {
    Tensor dx = like(xi->value);
    K(g).sum_backward(dx, g);
    accumulate_grad(*xi, dx);
  });
}

Var reshape(const Var& x, const Shape& shape) {
  auto xi = x.impl();
  Shape in_shape = x.shape();
  return make_result(x.value().view(shape), "reshape", {x},
                     [xi, in_shape](const Tensor& g) { accumulate_grad(*xi, g.view(in_shape)); });
}

}  // namespace cmoe::ag
