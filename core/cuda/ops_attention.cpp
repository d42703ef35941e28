// ops_attention.cpp — the CUDA column's fused adapters (core/cuda/kernels.h): causal attention
// (the plugin's flash kernels) and the LM-head cross-entropy, chunked over rows like the CPU's:
// per chunk, logits = h_c @ w^T on cuBLAS into a reused (rows, V) f32 buffer, then a row kernel
// (lse and per-row loss; in backward, dlogits in place) and, in backward, two cuBLAS products.
#include <algorithm>

#include "core/cuda/adapter_util.h"
#include "core/cuda/kernels.h"

namespace cmoe::cuda {

using detail::expect;
using detail::f32;
using detail::i32;

namespace {

void check_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& lse, Device d, const char* op) {
  for (const Tensor* t : std::initializer_list<const Tensor*>{&q, &k, &v, &lse}) expect(*t, DType::kF32, d, op, "a tensor");
  CMOE_CHECK(q.rank() == 4 && k.shape() == q.shape() && v.shape() == q.shape(), op, ": q ", q.str(), ", k ", k.str(),
             ", v ", v.str(), " must share one (B, T, H, Dh) shape");
  CMOE_CHECK(lse.shape() == Shape({q.dim(0), q.dim(2), q.dim(1)}), op, ": lse is ", lse.str(), ", expected (B, H, T)");
  CMOE_CHECK(q.dim(3) <= 128, op, ": head dim ", q.dim(3), " > 128, the CUDA kernel's limit");
}

// Rows per chunk: at least the caller's chunk, up to kCrossEntropyLogitElems logits at once.
int64_t ce_chunk_rows(int64_t n, int64_t v, int64_t chunk) {
  const int64_t by_memory = std::max<int64_t>(1, kCrossEntropyLogitElems / std::max<int64_t>(v, 1));
  return std::max<int64_t>(1, std::min(n, std::max(chunk, by_memory)));
}

void check_ce(const Tensor& h, const Tensor& w, const Tensor& targets, const Tensor& lse, int64_t chunk,
              DType compute_dtype, Device d) {
  expect(h, DType::kF32, d, "cross_entropy", "h");
  expect(w, DType::kF32, d, "cross_entropy", "w");
  expect(targets, DType::kI32, d, "cross_entropy", "targets");
  expect(lse, DType::kF32, d, "cross_entropy", "lse");
  CMOE_CHECK(h.rank() == 2 && w.rank() == 2 && w.dim(1) == h.dim(1) && targets.numel() == h.dim(0) &&
                 lse.numel() == h.dim(0),
             "cross_entropy: h ", h.str(), ", w ", w.str(), ", targets ", targets.str(), ", lse ", lse.str());
  CMOE_CHECK(chunk > 0, "cross_entropy: chunk must be positive, got ", chunk);
  CMOE_CHECK(compute_dtype == DType::kF32 || compute_dtype == DType::kBF16,
             "cross_entropy: compute dtype must be f32 or bf16, got ", dtype_name(compute_dtype));
}

}  // namespace

void attention_forward(Tensor& out, Tensor& lse, const Tensor& q, const Tensor& k, const Tensor& v, float scale) {
  const Device d = detail::device_of(q, "attention_forward");
  check_attention(q, k, v, lse, d, "attention_forward");
  expect(out, DType::kF32, d, "attention_forward", "out");
  CMOE_CHECK(out.shape() == q.shape(), "attention_forward: out ", out.str());
  check(api().attention_forward_f32(f32(out), f32(lse), f32(q), f32(k), f32(v), q.dim(0), q.dim(1), q.dim(2),
                                    q.dim(3), scale, compute_stream()),
        "attention_forward_f32");
}

void attention_backward(Tensor& dq, Tensor& dk, Tensor& dv, const Tensor& dout, const Tensor& q, const Tensor& k,
                        const Tensor& v, const Tensor& out, const Tensor& lse, float scale) {
  const Device d = detail::device_of(q, "attention_backward");
  check_attention(q, k, v, lse, d, "attention_backward");
  for (const Tensor* t : std::initializer_list<const Tensor*>{&dq, &dk, &dv, &dout, &out}) {
    expect(*t, DType::kF32, d, "attention_backward", "a gradient or output");
    CMOE_CHECK(t->shape() == q.shape(), "attention_backward: ", t->str(), " for q ", q.str());
  }
  Tensor delta = Tensor::empty(lse.shape(), DType::kF32, d);  // (B, H, T) rowsum(dout * out)
  check(api().attention_backward_f32(f32(dq), f32(dk), f32(dv), f32(delta), f32(dout), f32(q), f32(k), f32(v),
                                     f32(out), f32(lse), q.dim(0), q.dim(1), q.dim(2), q.dim(3), scale,
                                     compute_stream()),
        "attention_backward_f32");
}

void cross_entropy_forward(Tensor& loss, Tensor& lse, const Tensor& h, const Tensor& w, const Tensor& targets,
                           int64_t chunk, DType compute_dtype) {
  const Device d = detail::device_of(h, "cross_entropy_forward");
  check_ce(h, w, targets, lse, chunk, compute_dtype, d);
  expect(loss, DType::kF32, d, "cross_entropy_forward", "loss");
  CMOE_CHECK(loss.numel() == 1, "cross_entropy: loss is ", loss.str());
  const int64_t N = h.dim(0), V = w.dim(0), cn = ce_chunk_rows(N, V, chunk);
  const BlasHandle& handle = blas(d);
  Tensor wc = to_compute(w, compute_dtype);                        // (V, D)
  Tensor logits = Tensor::empty({cn, V}, DType::kF32, d);          // (chunk, V), reused
  Tensor row_loss = scratch(d, static_cast<size_t>(N) * sizeof(double));  // (N) f64
  for (int64_t n0 = 0; n0 < N; n0 += cn) {
    const int64_t rows = std::min(cn, N - n0);
    Tensor lg = logits.slice0(0, rows);
    matmul(lg, to_compute(h.slice0(n0, n0 + rows), compute_dtype), wc, false, true, 1.0f, 0.0f, handle);
    check(api().ce_rows_forward_f32(f32(lse) + n0, static_cast<double*>(row_loss.raw_data()) + n0, f32(lg),
                                    i32(targets) + n0, rows, V, compute_stream()),
          "ce_rows_forward_f32");
  }
  check(api().sum_f64(f32(loss), static_cast<const double*>(row_loss.raw_data()), N, compute_stream()), "sum_f64");
}

void cross_entropy_backward(Tensor& dh, Tensor& dw, const Tensor& dloss, const Tensor& h, const Tensor& w,
                            const Tensor& targets, const Tensor& lse, int64_t chunk, DType compute_dtype) {
  const Device d = detail::device_of(h, "cross_entropy_backward");
  check_ce(h, w, targets, lse, chunk, compute_dtype, d);
  expect(dh, DType::kF32, d, "cross_entropy_backward", "dh");
  expect(dw, DType::kF32, d, "cross_entropy_backward", "dw");
  expect(dloss, DType::kF32, d, "cross_entropy_backward", "dloss");
  CMOE_CHECK(dh.shape() == h.shape() && dw.shape() == w.shape() && dloss.numel() == 1, "cross_entropy_backward: dh ",
             dh.str(), ", dw ", dw.str(), ", dloss ", dloss.str());
  const int64_t N = h.dim(0), V = w.dim(0), cn = ce_chunk_rows(N, V, chunk);
  const BlasHandle& handle = blas(d);
  Tensor wc = to_compute(w, compute_dtype);
  Tensor logits = Tensor::empty({cn, V}, DType::kF32, d);  // (chunk, V): logits, then dlogits
  for (int64_t n0 = 0; n0 < N; n0 += cn) {
    const int64_t rows = std::min(cn, N - n0);
    Tensor lg = logits.slice0(0, rows);
    Tensor hc = to_compute(h.slice0(n0, n0 + rows), compute_dtype);
    matmul(lg, hc, wc, false, true, 1.0f, 0.0f, handle);
    check(api().ce_rows_backward_f32(f32(lg), i32(targets) + n0, f32(lse) + n0, f32(dloss), rows, V,
                                     compute_stream()),
          "ce_rows_backward_f32");
    Tensor dlg = to_compute(lg, compute_dtype);
    Tensor dh_c = dh.slice0(n0, n0 + rows);
    matmul(dh_c, dlg, wc, false, false, 1.0f, 0.0f, handle);
    matmul(dw, dlg, hc, true, false, 1.0f, 1.0f, handle);
  }
}

}  // namespace cmoe::cuda
