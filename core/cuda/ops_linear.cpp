// ops_linear.cpp — the CUDA column's matmul adapters (core/cuda/kernels.h): rounding to the
// compute dtype, linear on cuBLAS, and the grouped expert linear as one cuBLAS grouped GEMM per
// product (core/cuda/grouped_gemm.h). The bf16 rule is the CPU's (core/ops/linear.h): x, w and,
// in backward, dout are rounded to bf16 for the matmuls; accumulation and outputs are f32.
#include "core/cuda/adapter_util.h"
#include "core/cuda/grouped_gemm.h"
#include "core/cuda/kernels.h"

namespace cmoe::cuda {

using detail::expect;
using detail::f32;

namespace {

int32_t blas_dtype(DType d) { return d == DType::kF32 ? CMOE_CUDA_F32 : CMOE_CUDA_BF16; }

void run_grouped(GroupedGemmKind kind, Tensor& out, const Tensor& a, const Tensor& b, std::span<const int64_t> offsets,
                 int64_t M, int64_t K, Device d) {
  const GroupedGemmPlan plan =
      grouped_gemm_plan(kind, offsets, M, K, a.raw_data(), b.raw_data(), out.raw_data(),
                        static_cast<int64_t>(dtype_size(a.dtype())));
  if (plan.zero_output) out.zero_();
  if (plan.size() == 0) return;
  Tensor ptrs = scratch(d, 3 * static_cast<size_t>(plan.size()) * sizeof(void*));
  check(api().blas_grouped_matmul(plan.c.data(), plan.a.data(), plan.b.data(), plan.m.data(), plan.n.data(),
                                  plan.k.data(), plan.size(), blas_dtype(a.dtype()), plan.trans_a, plan.trans_b, 1.0f,
                                  plan.beta, static_cast<void**>(ptrs.raw_data()), blas(d).get()),
        "blas_grouped_matmul");
}

void check_offsets(std::span<const int64_t> offsets, int64_t groups, int64_t rows, const char* op) {
  CMOE_CHECK(static_cast<int64_t>(offsets.size()) == groups + 1 && offsets[0] == 0 && offsets[groups] == rows, op,
             ": ", offsets.size(), " offsets for ", groups, " groups over ", rows, " rows");
}

}  // namespace

Tensor to_compute(const Tensor& t, DType compute_dtype) {
  CMOE_CHECK(compute_dtype == DType::kF32 || compute_dtype == DType::kBF16,
             "linear: compute dtype must be f32 or bf16, got ", dtype_name(compute_dtype));
  if (t.dtype() == compute_dtype) return t;
  const Device d = detail::device_of(t, "to_compute");
  CMOE_CHECK(t.dtype() == DType::kF32, "linear: inputs are f32 or ", dtype_name(compute_dtype), ", got ", t.str());
  Tensor r = Tensor::empty(t.shape(), DType::kBF16, d);
  check(api().f32_to_bf16(reinterpret_cast<uint16_t*>(r.data<bf16>()), t.data<float>(), t.numel(), compute_stream()),
        "f32_to_bf16");
  return r;
}

void linear_forward(Tensor& out, const Tensor& x, const Tensor& w, DType compute_dtype) {
  CMOE_CHECK(x.rank() == 2 && w.rank() == 2 && x.dim(1) == w.dim(1), "linear_forward: x (N, K) and w (M, K), got ",
             x.str(), ", ", w.str());
  const Device d = detail::device_of(out, "linear_forward");
  Tensor xc = to_compute(x, compute_dtype), wc = to_compute(w, compute_dtype);
  matmul(out, xc, wc, /*trans_a=*/false, /*trans_b=*/true, 1.0f, 0.0f, blas(d));
}

void linear_backward(Tensor& dx, Tensor& dw, const Tensor& dout, const Tensor& x, const Tensor& w,
                     DType compute_dtype, bool accumulate_dw) {
  CMOE_CHECK(dout.rank() == 2 && x.rank() == 2 && w.rank() == 2 && dout.dim(0) == x.dim(0) &&
                 dout.dim(1) == w.dim(0) && x.dim(1) == w.dim(1),
             "linear_backward: dout (N, M), x (N, K), w (M, K), got ", dout.str(), ", ", x.str(), ", ", w.str());
  if (!dx.defined() && !dw.defined()) return;
  const Device d = detail::device_of(dout, "linear_backward");
  Tensor doutc = to_compute(dout, compute_dtype);  // (N, M)
  if (dx.defined()) matmul(dx, doutc, to_compute(w, compute_dtype), false, false, 1.0f, 0.0f, blas(d));
  if (dw.defined()) {
    matmul(dw, doutc, to_compute(x, compute_dtype), true, false, 1.0f, accumulate_dw ? 1.0f : 0.0f, blas(d));
  }
}

void grouped_linear_forward(Tensor& out, const Tensor& x, const Tensor& w, std::span<const int64_t> offsets,
                            DType compute_dtype) {
  CMOE_CHECK(x.rank() == 2 && w.rank() == 3 && x.dim(1) == w.dim(2),
             "grouped_linear_forward: x (R, K) and w (G, M, K), got ", x.str(), ", ", w.str());
  const Device d = detail::device_of(out, "grouped_linear_forward");
  expect(out, DType::kF32, d, "grouped_linear_forward", "out");
  CMOE_CHECK(out.rank() == 2 && out.dim(0) == x.dim(0) && out.dim(1) == w.dim(1), "grouped_linear_forward: out ",
             out.str());
  check_offsets(offsets, w.dim(0), x.dim(0), "grouped_linear_forward");
  Tensor xc = to_compute(x, compute_dtype), wc = to_compute(w, compute_dtype);
  run_grouped(GroupedGemmKind::kForward, out, xc, wc, offsets, w.dim(1), w.dim(2), d);
}

void grouped_linear_backward(Tensor& dx, Tensor& dw, const Tensor& dout, const Tensor& x, const Tensor& w,
                             std::span<const int64_t> offsets, DType compute_dtype, bool accumulate_dw) {
  CMOE_CHECK(dout.rank() == 2 && x.rank() == 2 && w.rank() == 3 && dout.dim(0) == x.dim(0) &&
                 dout.dim(1) == w.dim(1) && x.dim(1) == w.dim(2),
             "grouped_linear_backward: dout (R, M), x (R, K), w (G, M, K), got ", dout.str(), ", ", x.str(), ", ",
             w.str());
  if (!dx.defined() && !dw.defined()) return;
  const Device d = detail::device_of(dout, "grouped_linear_backward");
  check_offsets(offsets, w.dim(0), x.dim(0), "grouped_linear_backward");
  Tensor doutc = to_compute(dout, compute_dtype);  // (R, M)
  if (dx.defined()) {
    expect(dx, DType::kF32, d, "grouped_linear_backward", "dx");
    run_grouped(GroupedGemmKind::kGradInput, dx, doutc, to_compute(w, compute_dtype), offsets, w.dim(1), w.dim(2), d);
  }
  if (dw.defined()) {
    expect(dw, DType::kF32, d, "grouped_linear_backward", "dw");
    // The grouped GEMM accumulates (beta 1) and skips experts with no rows: overwriting is
    // accumulating into zeros.
    if (!accumulate_dw) dw.zero_();
    run_grouped(GroupedGemmKind::kGradWeight, dw, doutc, to_compute(x, compute_dtype), offsets, w.dim(1), w.dim(2), d);
  }
}

}  // namespace cmoe::cuda
