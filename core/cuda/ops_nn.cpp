// ops_nn.cpp — the CUDA column's network-op adapters (core/cuda/kernels.h): embedding, RMSNorm,
// RoPE, SwiGLU, softmax, top-k, gather_rows and scatter_add_rows.
#include "core/cuda/adapter_util.h"
#include "core/cuda/kernels.h"
#include "core/cuda/launch_geometry.h"

namespace cmoe::cuda {

using detail::expect;
using detail::f32;
using detail::i32;

namespace {

// out[idx[j]] += w[j] * src[j] (w undefined: 1), deterministic (see the plugin's nn.cu).
// out: (n_out, D); src: (M, D); idx: (M) i32; w: (M) f32 or undefined.
void row_scatter_add(Tensor& out, const Tensor& src, const Tensor& idx, const Tensor& w, const char* op) {
  const Device d = detail::device_of(out, op);
  expect(out, DType::kF32, d, op, "out");
  expect(src, DType::kF32, d, op, "src");
  expect(idx, DType::kI32, d, op, "idx");
  const int64_t m = idx.numel(), cols = out.cols(), n_out = out.rows();
  CMOE_CHECK(src.numel() == m * cols, op, ": ", src.str(), " for ", m, " rows of ", cols);
  if (w.defined()) {
    expect(w, DType::kF32, d, op, "w");
    CMOE_CHECK(w.numel() == m, op, ": w ", w.str(), " for ", m, " rows");
  }
  size_t bytes = 0;
  check(api().row_scatter_workspace(&bytes, m, n_out), "row_scatter_workspace");
  Tensor ws = scratch(d, bytes);
  check(api().row_scatter_add_f32(f32(out), f32(src), i32(idx), f32(w), m, cols, n_out, ws.raw_data(), bytes,
                                  compute_stream()),
        op);
}

// The cos/sin table of the last (device, theta, pos0, T, half), kept like the CPU's: q and k,
// forward and backward, all use the same one in a step.
struct RopeTable {
  Device device{DeviceType::kCUDA, -1};
  float theta = 0;
  int64_t pos0 = -1, t = 0, half = 0;
  Tensor cos, sin;  // (T, half) f32
};

const RopeTable& rope_table(Device d, float theta, int64_t pos0, int64_t t, int64_t half) {
  thread_local RopeTable tab;
  if (tab.device == d && tab.theta == theta && tab.pos0 == pos0 && tab.t == t && tab.half == half) return tab;
  tab.cos = Tensor::empty({t, half}, DType::kF32, d);
  tab.sin = Tensor::empty({t, half}, DType::kF32, d);
  check(api().rope_table_f32(f32(tab.cos), f32(tab.sin), t, half, theta, pos0, compute_stream()), "rope_table_f32");
  tab.device = d, tab.theta = theta, tab.pos0 = pos0, tab.t = t, tab.half = half;
  return tab;
}

void rope_apply(Tensor& out, const Tensor& x, float theta, int64_t pos0, float sign, const char* op) {
  const Device d = detail::device_of(out, op);
  expect(out, DType::kF32, d, op, "out");
  expect(x, DType::kF32, d, op, "x");
  CMOE_CHECK(x.rank() == 4 && out.shape() == x.shape() && x.dim(3) % 2 == 0 && pos0 >= 0, op, ": x ", x.str(),
             ", out ", out.str(), ", pos0 ", pos0, " (want (B, T, H, Dh), Dh even)");
  const RopeTable& tab = rope_table(d, theta, pos0, x.dim(1), x.dim(3) / 2);
  check(api().rope_apply_f32(f32(out), f32(x), f32(tab.cos), f32(tab.sin), x.dim(0), x.dim(1), x.dim(2), x.dim(3),
                             sign, compute_stream()),
        op);
}

}  // namespace

void embedding_forward(Tensor& out, const Tensor& table, const Tensor& ids) {
  const Device d = detail::device_of(out, "embedding_forward");
  expect(out, DType::kF32, d, "embedding_forward", "out");
  expect(table, DType::kF32, d, "embedding_forward", "table");
  expect(ids, DType::kI32, d, "embedding_forward", "ids");
  CMOE_CHECK(table.rank() == 2 && out.numel() == ids.numel() * table.dim(1), "embedding_forward: out ", out.str(),
             ", table ", table.str(), ", ids ", ids.str());
  check(api().gather_rows_f32(f32(out), f32(table), i32(ids), ids.numel(), table.dim(1), table.dim(0),
                              compute_stream()),
        "gather_rows_f32 (embedding)");
}

void embedding_backward(Tensor& dtable, const Tensor& dout, const Tensor& ids) {
  row_scatter_add(dtable, dout, ids, Tensor(), "embedding_backward");
}

void rmsnorm_forward(Tensor& out, Tensor& rstd, const Tensor& x, const Tensor& w, float eps) {
  const Device d = detail::device_of(out, "rmsnorm_forward");
  for (const Tensor* t : std::initializer_list<const Tensor*>{&out, &rstd, &x, &w}) expect(*t, DType::kF32, d, "rmsnorm_forward", "a tensor");
  const int64_t n = x.rows(), c = x.cols();
  CMOE_CHECK(out.numel() == n * c && w.numel() == c && rstd.numel() == n, "rmsnorm_forward: out ", out.str(),
             " rstd ", rstd.str(), " x ", x.str(), " w ", w.str());
  check(api().rmsnorm_forward_f32(f32(out), f32(rstd), f32(x), f32(w), n, c, eps, compute_stream()),
        "rmsnorm_forward_f32");
}

void rmsnorm_backward(Tensor& dx, Tensor& dw, const Tensor& dout, const Tensor& x, const Tensor& w,
                      const Tensor& rstd) {
  if (!dx.defined() && !dw.defined()) return;
  const Device d = detail::device_of(dout, "rmsnorm_backward");
  for (const Tensor* t : std::initializer_list<const Tensor*>{&dout, &x, &w, &rstd}) expect(*t, DType::kF32, d, "rmsnorm_backward", "an input");
  const int64_t n = x.rows(), c = x.cols();
  CMOE_CHECK(dout.numel() == n * c && w.numel() == c && rstd.numel() == n, "rmsnorm_backward: dout ", dout.str(),
             " x ", x.str(), " w ", w.str(), " rstd ", rstd.str());
  if (dx.defined()) {
    expect(dx, DType::kF32, d, "rmsnorm_backward", "dx");
    CMOE_CHECK(dx.numel() == n * c, "rmsnorm_backward: dx ", dx.str());
  }
  Tensor partial;
  if (dw.defined()) {
    expect(dw, DType::kF32, d, "rmsnorm_backward", "dw");
    CMOE_CHECK(dw.numel() == c, "rmsnorm_backward: dw ", dw.str());
    partial = scratch(d, static_cast<size_t>(cuda_geom::colsum_chunks(n) * c) * sizeof(double));
  }
  check(api().rmsnorm_backward_f32(f32(dx), f32(dw), partial.defined() ? static_cast<double*>(partial.raw_data()) : nullptr,
                                   f32(dout), f32(x), f32(w), f32(rstd), n, c, compute_stream()),
        "rmsnorm_backward_f32");
}

void rope_forward(Tensor& out, const Tensor& x, float theta, int64_t pos0) {
  rope_apply(out, x, theta, pos0, 1.0f, "rope_forward");
}

void rope_backward(Tensor& dx, const Tensor& dout, float theta, int64_t pos0) {
  rope_apply(dx, dout, theta, pos0, -1.0f, "rope_backward");
}

void swiglu_forward(Tensor& out, const Tensor& gate, const Tensor& up) {
  const Device d = detail::device_of(out, "swiglu_forward");
  for (const Tensor* t : std::initializer_list<const Tensor*>{&out, &gate, &up}) expect(*t, DType::kF32, d, "swiglu_forward", "a tensor");
  CMOE_CHECK(gate.numel() == out.numel() && up.numel() == out.numel(), "swiglu_forward: ", gate.str(), " ", up.str());
  check(api().swiglu_forward_f32(f32(out), f32(gate), f32(up), out.numel(), compute_stream()), "swiglu_forward_f32");
}

void swiglu_backward(Tensor& dgate, Tensor& dup, const Tensor& dout, const Tensor& gate, const Tensor& up) {
  if (!dgate.defined() && !dup.defined()) return;
  const Device d = detail::device_of(dout, "swiglu_backward");
  for (const Tensor* t : std::initializer_list<const Tensor*>{&dout, &gate, &up}) expect(*t, DType::kF32, d, "swiglu_backward", "an input");
  for (const Tensor* t : std::initializer_list<const Tensor*>{&dgate, &dup}) {
    if (!t->defined()) continue;
    expect(*t, DType::kF32, d, "swiglu_backward", "an output");
    CMOE_CHECK(t->numel() == dout.numel(), "swiglu_backward: ", t->str(), " for ", dout.str());
  }
  check(api().swiglu_backward_f32(f32(dgate), f32(dup), f32(dout), f32(gate), f32(up), dout.numel(),
                                  compute_stream()),
        "swiglu_backward_f32");
}

void softmax_forward(Tensor& out, const Tensor& x) {
  const Device d = detail::device_of(out, "softmax_forward");
  expect(out, DType::kF32, d, "softmax_forward", "out");
  expect(x, DType::kF32, d, "softmax_forward", "x");
  CMOE_CHECK(out.numel() == x.numel(), "softmax_forward: out ", out.str(), " for ", x.str());
  check(api().softmax_forward_f32(f32(out), f32(x), x.rows(), x.cols(), compute_stream()), "softmax_forward_f32");
}

void softmax_backward(Tensor& dx, const Tensor& dout, const Tensor& out) {
  const Device d = detail::device_of(dx, "softmax_backward");
  for (const Tensor* t : std::initializer_list<const Tensor*>{&dx, &dout, &out}) expect(*t, DType::kF32, d, "softmax_backward", "a tensor");
  CMOE_CHECK(dx.numel() == out.numel() && dout.numel() == out.numel(), "softmax_backward: ", dx.str(), " ",
             dout.str(), " ", out.str());
  check(api().softmax_backward_f32(f32(dx), f32(dout), f32(out), out.rows(), out.cols(), compute_stream()),
        "softmax_backward_f32");
}

void topk_forward(Tensor& values, Tensor& indices, const Tensor& x, int k, const Tensor& mask) {
  const Device d = detail::device_of(x, "topk_forward");
  expect(x, DType::kF32, d, "topk_forward", "x");
  expect(values, DType::kF32, d, "topk_forward", "values");
  expect(indices, DType::kI32, d, "topk_forward", "indices");
  const int64_t n = x.rows(), e = x.cols();
  CMOE_CHECK(k >= 1 && k <= e && values.numel() == n * k && indices.numel() == n * k, "topk_forward: k ", k, " of ",
             x.str(), " into ", values.str(), " / ", indices.str());
  if (mask.defined()) {
    expect(mask, DType::kI32, d, "topk_forward", "mask");
    CMOE_CHECK(mask.numel() == n * e, "topk_forward: mask ", mask.str(), " for ", x.str());
  }
  check(api().topk_forward_f32(f32(values), indices.data<int32_t>(), f32(x), i32(mask), n, e, k, compute_stream()),
        "topk_forward_f32");
}

void topk_backward(Tensor& dx, const Tensor& dvalues, const Tensor& indices) {
  const Device d = detail::device_of(dx, "topk_backward");
  expect(dx, DType::kF32, d, "topk_backward", "dx");
  expect(dvalues, DType::kF32, d, "topk_backward", "dvalues");
  expect(indices, DType::kI32, d, "topk_backward", "indices");
  const int64_t n = dx.rows(), k = indices.cols();
  CMOE_CHECK(indices.rows() == n && dvalues.numel() == n * k, "topk_backward: dx ", dx.str(), ", dvalues ",
             dvalues.str(), ", indices ", indices.str());
  check(api().topk_backward_f32(f32(dx), f32(dvalues), i32(indices), n, dx.cols(), static_cast<int32_t>(k),
                                compute_stream()),
        "topk_backward_f32");
}

void gather_rows_forward(Tensor& out, const Tensor& x, const Tensor& idx) {
  const Device d = detail::device_of(out, "gather_rows_forward");
  expect(out, DType::kF32, d, "gather_rows_forward", "out");
  expect(x, DType::kF32, d, "gather_rows_forward", "x");
  expect(idx, DType::kI32, d, "gather_rows_forward", "idx");
  CMOE_CHECK(out.numel() == idx.numel() * x.cols() && out.cols() == x.cols(), "gather_rows_forward: out ", out.str(),
             ", x ", x.str(), ", idx ", idx.str());
  check(api().gather_rows_f32(f32(out), f32(x), i32(idx), idx.numel(), x.cols(), x.rows(), compute_stream()),
        "gather_rows_f32");
}

void gather_rows_backward(Tensor& dx, const Tensor& dout, const Tensor& idx) {
  row_scatter_add(dx, dout, idx, Tensor(), "gather_rows_backward");
}

void scatter_add_rows_forward(Tensor& out, const Tensor& y, const Tensor& idx, const Tensor& w) {
  row_scatter_add(out, y, idx, w, "scatter_add_rows_forward");
}

void scatter_add_rows_backward(Tensor& dy, Tensor& dw, const Tensor& dout, const Tensor& y, const Tensor& idx,
                               const Tensor& w) {
  if (!dy.defined() && !dw.defined()) return;
  const Device d = detail::device_of(dout, "scatter_add_rows_backward");
  expect(dout, DType::kF32, d, "scatter_add_rows_backward", "dout");
  expect(y, DType::kF32, d, "scatter_add_rows_backward", "y");
  expect(idx, DType::kI32, d, "scatter_add_rows_backward", "idx");
  expect(w, DType::kF32, d, "scatter_add_rows_backward", "w");
  const int64_t m = idx.numel(), cols = y.cols();
  CMOE_CHECK(y.rows() == m && w.numel() == m && dout.cols() == cols, "scatter_add_rows_backward: y ", y.str(),
             ", idx ", idx.str(), ", w ", w.str(), ", dout ", dout.str());
  if (dy.defined()) expect(dy, DType::kF32, d, "scatter_add_rows_backward", "dy");
  if (dw.defined()) expect(dw, DType::kF32, d, "scatter_add_rows_backward", "dw");
  check(api().scatter_rows_backward_f32(f32(dy), f32(dw), f32(dout), f32(y), i32(idx), f32(w), m, cols,
                                        compute_stream()),
        "scatter_rows_backward_f32");
}

}  // namespace cmoe::cuda
