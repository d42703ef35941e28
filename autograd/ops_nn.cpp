// ops_nn.cpp — autograd wrappers for the network ops: embedding, rmsnorm, rope, swiglu,
// softmax, topk, gather_rows, scatter_add_rows. Kernels take 2-D (rows, cols) views; leading
// dimensions are flattened here and restored on results. An input's gradient is computed only
// when that input requires grad.
#include "autograd/ops.h"
#include "core/profiler.h"
#include "autograd/op_table.h"

namespace cmoe::ag {

namespace {
Tensor f32(const Shape& s, Device d) { return Tensor::empty(s, DType::kF32, d); }
const OpKernels& K(const Tensor& t) { return kernels(t.device()); }
Tensor like(const Tensor& t) { return Tensor::empty(t.shape(), DType::kF32, t.device()); }
Tensor as_rows(const Tensor& t) { return t.view(Shape{t.rows(), t.cols()}); }  // (..., C) -> (R, C)
Tensor as_vec(const Tensor& t) { return t.view(Shape{t.numel()}); }
}  // namespace

// out[..., :] = table[ids[...], :]: ids of any shape S (i32) -> S + (D)
Var embedding(const Var& table, const Tensor& ids) {
  prof::Span span("embedding", prof::Cat::kOp);
  CMOE_CHECK(table.value().rank() == 2, "embedding: table ", table.value().str(), ", want (V, D)");
  const int64_t d = table.value().dim(1);
  std::vector<int64_t> dims(ids.shape().dims().begin(), ids.shape().dims().end());
  dims.push_back(d);
  Tensor out = f32(Shape(std::span<const int64_t>(dims)), table.value().device());
  Tensor out2 = as_rows(out);
  K(out).embedding_forward(out2, table.value(), as_vec(ids));
  auto ti = table.impl();
  Tensor flat_ids = as_vec(ids);
  return make_result(out, "embedding", {table}, [ti, flat_ids](const Tensor& g) {
    Tensor dtable = Tensor::zeros(ti->value.shape(), DType::kF32, g.device());
    K(g).embedding_backward(dtable, as_rows(g), flat_ids);
    accumulate_grad(*ti, dtable);
  });
}

// out = x * rstd * w over the last dim: x (..., D), w (D)
Var rmsnorm(const Var& x, const Var& w, float eps) {
  prof::Span span("rmsnorm", prof::Cat::kOp);
  const Tensor xr = as_rows(x.value());
  CMOE_CHECK(w.value().numel() == xr.cols(), "rmsnorm: w ", w.value().str(), " for x ", x.value().str());
  Tensor out = like(x.value());
  Tensor out2 = as_rows(out);
  Tensor rstd = f32(Shape{xr.rows()}, out.device());  // (N)
  K(out).rmsnorm_forward(out2, rstd, xr, w.value(), eps);
  auto xi = x.impl(), wi = w.impl();
  Tensor wv = w.value();
  return make_result(out, "rmsnorm", {x, w}, [xi, wi, xr, wv, rstd](const Tensor& g) {
    Tensor dx = xi->requires_grad ? like(xr) : Tensor();
    Tensor dw = wi->requires_grad ? Tensor::zeros(wv.shape(), DType::kF32, g.device()) : Tensor();
    K(g).rmsnorm_backward(dx, dw, as_rows(g), xr, wv, rstd);
    if (dx.defined()) accumulate_grad(*xi, dx.view(xi->value.shape()));
    if (dw.defined()) accumulate_grad(*wi, dw);
  });
}

// rotate (B, T, H, Dh) by positions pos0 + t
Var rope(const Var& x, float theta, int64_t pos0) {
  prof::Span span("rope", prof::Cat::kOp);
  Tensor out = like(x.value());
  K(out).rope_forward(out, x.value(), theta, pos0);
  auto xi = x.impl();
  return make_result(out, "rope", {x}, [xi, theta, pos0](const Tensor& g) {
    Tensor dx = like(g);
    K(g).rope_backward(dx, g, theta, pos0);
    accumulate_grad(*xi, dx);
  });
}

// silu(gate) * up, both (..., F)
Var swiglu(const Var& gate, const Var& up, DType io_dtype) {
  prof::Span span("swiglu", prof::Cat::kOp);
  CMOE_CHECK(gate.shape() == up.shape(), "swiglu: gate ", gate.value().str(), " up ", up.value().str());
  CMOE_CHECK(io_dtype == DType::kF32 || io_dtype == DType::kBF16, "swiglu: io dtype ", dtype_name(io_dtype));
  // The CUDA kernels are f32 only: there the rounding stays in the linears.
  const DType io = gate.value().device().is_cpu() ? io_dtype : DType::kF32;
  Tensor out = Tensor::empty(gate.shape(), io, gate.value().device());
  K(out).swiglu_forward(out, gate.value(), up.value());
  auto gi = gate.impl(), ui = up.impl();
  Tensor gv = gate.value(), uv = up.value();
  return make_result(out, "swiglu", {gate, up}, [gi, ui, gv, uv, io](const Tensor& g) {
    Tensor dgate = gi->requires_grad ? Tensor::empty(gv.shape(), io, gv.device()) : Tensor();
    Tensor dup = ui->requires_grad ? Tensor::empty(uv.shape(), io, uv.device()) : Tensor();
    K(g).swiglu_backward(dgate, dup, g, gv, uv);
    if (dgate.defined()) accumulate_grad(*gi, dgate);
    if (dup.defined()) accumulate_grad(*ui, dup);
  });
}

// softmax over the last dim of x (..., E)
Var softmax(const Var& x) {
  prof::Span span("softmax", prof::Cat::kOp);
  Tensor out = like(x.value());
  Tensor out2 = as_rows(out);
  K(out).softmax_forward(out2, as_rows(x.value()));
  auto xi = x.impl();
  return make_result(out, "softmax", {x}, [xi, out2](const Tensor& g) {
    Tensor dx = like(xi->value);
    Tensor dx2 = as_rows(dx);
    K(g).softmax_backward(dx2, as_rows(g), out2);
    accumulate_grad(*xi, dx);
  });
}

// k largest of each row of x (N, E), descending, ties to the lower index; masked entries skipped
TopK topk(const Var& x, int k, const Tensor& mask) {
  prof::Span span("topk", prof::Cat::kOp);
  CMOE_CHECK(x.value().rank() == 2, "topk: x ", x.value().str(), ", want (N, E)");
  const int64_t n = x.value().dim(0);
  Tensor values = f32(Shape{n, k}, x.value().device());
  Tensor indices = Tensor::empty(Shape{n, k}, DType::kI32, x.value().device());
  K(values).topk_forward(values, indices, x.value(), k, mask);
  auto xi = x.impl();
  Var v = make_result(values, "topk", {x}, [xi, indices](const Tensor& g) {
    Tensor dx = like(xi->value);
    K(g).topk_backward(dx, g, indices);
    accumulate_grad(*xi, dx);
  });
  return TopK{v, indices};
}

// out[m] = x[idx[m]]: x (N, D), idx (M) -> (M, D)
Var gather_rows(const Var& x, const Tensor& idx) {
  prof::Span span("gather_rows", prof::Cat::kOp);
  const Tensor xr = as_rows(x.value());
  Tensor out = f32(Shape{idx.numel(), xr.cols()}, xr.device());
  K(out).gather_rows_forward(out, xr, as_vec(idx));
  auto xi = x.impl();
  Tensor flat_idx = as_vec(idx);
  return make_result(out, "gather_rows", {x}, [xi, flat_idx](const Tensor& g) {
    Tensor dx = Tensor::zeros(xi->value.shape(), DType::kF32, g.device());
    Tensor dx2 = as_rows(dx);
    K(g).gather_rows_backward(dx2, g, flat_idx);
    accumulate_grad(*xi, dx);
  });
}

// out (n_rows, D), out[idx[m]] += w[m] * y[m]: y (M, D), idx (M), w (M)
Var scatter_add_rows(const Var& y, const Tensor& idx, const Var& w, int64_t n_rows) {
  prof::Span span("scatter_add_rows", prof::Cat::kOp);
  const Tensor yr = as_rows(y.value());
  Tensor out = Tensor::zeros(Shape{n_rows, yr.cols()}, DType::kF32, yr.device());
  const Tensor flat_idx = as_vec(idx), wv = as_vec(w.value());
  K(out).scatter_add_rows_forward(out, yr, flat_idx, wv);
  auto yi = y.impl(), wi = w.impl();
  return make_result(out, "scatter_add_rows", {y, w}, [yi, wi, yr, flat_idx, wv](const Tensor& g) {
    Tensor dy = yi->requires_grad ? like(yr) : Tensor();
    Tensor dw = wi->requires_grad ? like(wv) : Tensor();
    K(g).scatter_add_rows_backward(dy, dw, g, yr, flat_idx, wv);
    if (dy.defined()) accumulate_grad(*yi, dy.view(yi->value.shape()));
    if (dw.defined()) accumulate_grad(*wi, dw.view(wi->value.shape()));
  });
}

}  // namespace cmoe::ag
