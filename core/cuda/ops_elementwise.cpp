// ops_elementwise.cpp — the CUDA column's element-wise adapters (core/cuda/kernels.h): add, mul,
// scale, sum, scale_rows, add_bias.
#include "core/cuda/adapter_util.h"
#include "core/cuda/kernels.h"
#include "core/cuda/launch_geometry.h"

namespace cmoe::cuda {

using detail::expect;
using detail::f32;

namespace {
void same_f32(const Tensor& out, const Tensor& x, const char* op, Device d) {
  expect(out, DType::kF32, d, op, "out");
  expect(x, DType::kF32, d, op, "x");
  CMOE_CHECK(out.numel() == x.numel(), op, ": out ", out.str(), " for ", x.str());
}
}  // namespace

void add_forward(Tensor& out, const Tensor& a, const Tensor& b) {
  const Device d = detail::device_of(out, "add_forward");
  same_f32(out, a, "add_forward", d);
  same_f32(out, b, "add_forward", d);
  check(api().add_f32(f32(out), f32(a), f32(b), out.numel(), compute_stream()), "add_f32");
}

void add_backward(Tensor& da, Tensor& db, const Tensor& dout) {
  if (da.defined()) da.copy_from(dout);
  if (db.defined()) db.copy_from(dout);
}

void mul_forward(Tensor& out, const Tensor& a, const Tensor& b) {
  const Device d = detail::device_of(out, "mul_forward");
  same_f32(out, a, "mul_forward", d);
  same_f32(out, b, "mul_forward", d);
  check(api().mul_f32(f32(out), f32(a), f32(b), out.numel(), compute_stream()), "mul_f32");
}

void mul_backward(Tensor& da, Tensor& db, const Tensor& dout, const Tensor& a, const Tensor& b) {
  const Device d = detail::device_of(dout, "mul_backward");
  if (da.defined()) {
    same_f32(da, b, "mul_backward", d);
    check(api().mul_f32(f32(da), f32(dout), f32(b), da.numel(), compute_stream()), "mul_f32");
  }
  if (db.defined()) {
    same_f32(db, a, "mul_backward", d);
    check(api().mul_f32(f32(db), f32(dout), f32(a), db.numel(), compute_stream()), "mul_f32");
  }
}

void scale_forward(Tensor& out, const Tensor& x, float s) {
  const Device d = detail::device_of(out, "scale_forward");
  same_f32(out, x, "scale_forward", d);
  check(api().scale_f32(f32(out), f32(x), s, out.numel(), compute_stream()), "scale_f32");
}

void scale_backward(Tensor& dx, const Tensor& dout, float s) { scale_forward(dx, dout, s); }

void sum_forward(Tensor& out, const Tensor& x) {
  const Device d = detail::device_of(out, "sum_forward");
  expect(x, DType::kF32, d, "sum_forward", "x");
  CMOE_CHECK(out.numel() == 1 && out.dtype() == DType::kF32, "sum_forward: out ", out.str());
  check(api().sum_f32(f32(out), f32(x), x.numel(), compute_stream()), "sum_f32");
}

void sum_backward(Tensor& dx, const Tensor& dout) {
  const Device d = detail::device_of(dx, "sum_backward");
  expect(dout, DType::kF32, d, "sum_backward", "dout");
  CMOE_CHECK(dout.numel() == 1 && dx.dtype() == DType::kF32, "sum_backward: dout ", dout.str(), ", dx ", dx.str());
  check(api().fill_from_f32(f32(dx), f32(dout), dx.numel(), compute_stream()), "fill_from_f32");
}

void scale_rows_forward(Tensor& out, const Tensor& x, const Tensor& s) {
  const Device d = detail::device_of(out, "scale_rows_forward");
  same_f32(out, x, "scale_rows_forward", d);
  expect(s, DType::kF32, d, "scale_rows_forward", "s");
  CMOE_CHECK(s.numel() == x.rows(), "scale_rows: s ", s.str(), " for ", x.str());
  check(api().scale_rows_f32(f32(out), f32(x), f32(s), x.rows(), x.cols(), compute_stream()), "scale_rows_f32");
}

void scale_rows_backward(Tensor& dx, Tensor& ds, const Tensor& dout, const Tensor& x, const Tensor& s) {
  if (dx.defined()) scale_rows_forward(dx, dout, s);
  if (ds.defined()) {
    const Device d = detail::device_of(ds, "scale_rows_backward");
    same_f32(dout, x, "scale_rows_backward", d);
    expect(ds, DType::kF32, d, "scale_rows_backward", "ds");
    CMOE_CHECK(ds.numel() == x.rows(), "scale_rows_backward: ds ", ds.str(), " for ", x.str());
    check(api().row_dot_f32(f32(ds), f32(dout), f32(x), x.rows(), x.cols(), compute_stream()), "row_dot_f32");
  }
}

void add_bias_forward(Tensor& out, const Tensor& x, const Tensor& b) {
  const Device d = detail::device_of(out, "add_bias_forward");
  same_f32(out, x, "add_bias_forward", d);
  expect(b, DType::kF32, d, "add_bias_forward", "b");
  CMOE_CHECK(b.numel() == x.cols(), "add_bias: b ", b.str(), " for ", x.str());
  check(api().add_bias_f32(f32(out), f32(x), f32(b), x.rows(), x.cols(), compute_stream()), "add_bias_f32");
}

void add_bias_backward(Tensor& dx, Tensor& db, const Tensor& dout) {
  if (dx.defined()) dx.copy_from(dout);
  if (!db.defined()) return;
  const Device d = detail::device_of(db, "add_bias_backward");
  expect(dout, DType::kF32, d, "add_bias_backward", "dout");
  CMOE_CHECK(db.numel() == dout.cols(), "add_bias_backward: db ", db.str(), " for ", dout.str());
  const int64_t rows = dout.rows(), cols = dout.cols();
  Tensor partial = scratch(d, static_cast<size_t>(cuda_geom::colsum_chunks(rows) * cols) * sizeof(double));
  check(api().col_sum_f32(f32(db), f32(dout), rows, cols, static_cast<double*>(partial.raw_data()), compute_stream()),
        "col_sum_f32");
}

}  // namespace cmoe::cuda
