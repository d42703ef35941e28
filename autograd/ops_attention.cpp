// ops_attention.cpp — autograd wrappers for the two fused, memory-saving ops: causal
// attention and the chunked LM-head cross-entropy. Each saves only what its backward kernel
// reads (attention: q, k, v, out and the (B, H, T) log-sum-exp; cross-entropy: h, w, targets
// and the (N) log-sum-exp), never a (T x T) score or (N x V) logit matrix.
#include "autograd/ops.h"
#include "core/profiler.h"
#include "autograd/op_table.h"

namespace cmoe::ag {

Var attention(const Var& q, const Var& k, const Var& v, float scale, DType compute_dtype) {
  prof::Span span("attention", prof::Cat::kOp);
  CMOE_CHECK(q.value().rank() == 4 && k.shape() == q.shape() && v.shape() == q.shape(),
             "attention: q ", q.value().str(), ", k ", k.value().str(), ", v ", v.value().str(),
             " must share one (B, T, H, Dh) shape");
  const Shape& s = q.shape();
  const Device dev = q.value().device();
  Tensor out = Tensor::empty(s, DType::kF32, dev);
  Tensor lse = Tensor::empty({s[0], s[2], s[1]}, DType::kF32, dev);  // (B, H, T)
  kernels(dev).attention_forward(out, lse, q.value(), k.value(), v.value(), scale, compute_dtype);
  auto qi = q.impl(), ki = k.impl(), vi = v.impl();
  Tensor qv = q.value(), kv = k.value(), vv = v.value();
  Var result = make_result(out, "attention", {q, k, v},
                     [qi, ki, vi, qv, kv, vv, out, lse, scale, compute_dtype](const Tensor& g) {
                       const Device d = qv.device();
                       Tensor dq = Tensor::empty(qv.shape(), DType::kF32, d);
                       Tensor dk = Tensor::empty(qv.shape(), DType::kF32, d);
                       Tensor dv = Tensor::empty(qv.shape(), DType::kF32, d);
                       kernels(d).attention_backward(dq, dk, dv, g, qv, kv, vv, out, lse, scale,
                                                     compute_dtype);
                       if (qi->requires_grad) accumulate_grad(*qi, dq);
                       if (ki->requires_grad) accumulate_grad(*ki, dk);
                       if (vi->requires_grad) accumulate_grad(*vi, dv);
                     });
  op_flops(result, "attention", 2.0 * s[0] * s[2] * s[1] * s[1] * s[3]);
  return result;
}

Var cross_entropy(const Var& h, const Var& w, const Tensor& targets, int64_t chunk,
                  DType compute_dtype, float expected_grad) {
  prof::Span span("cross_entropy", prof::Cat::kOp);
  const Device dev = h.value().device();
  Tensor loss = Tensor::empty(Shape{}, DType::kF32, dev);
  Tensor lse = Tensor::empty({h.shape()[0]}, DType::kF32, dev);  // (N)
  auto hi = h.impl(), wi = w.impl();
  Tensor hv = h.value(), wv = w.value();
  // The gradients for expected_grad, computed with the forward (CPU only: one pass over the
  // logits); undefined when not precomputed or not wanted.
  Tensor pre_dh, pre_dw;
  const bool fused = expected_grad != 0.0f && dev.is_cpu() && grad_enabled() &&
                     (hi->requires_grad || wi->requires_grad);
  if (fused) {
    if (hi->requires_grad) pre_dh = Tensor::empty(hv.shape(), DType::kF32, dev);
    if (wi->requires_grad) pre_dw = Tensor::zeros(wv.shape(), DType::kF32, dev);
    ops::cross_entropy_forward_backward(loss, lse, pre_dh, pre_dw, expected_grad, hv, wv, targets,
                                        chunk, compute_dtype);
  } else {
    kernels(dev).cross_entropy_forward(loss, lse, hv, wv, targets, chunk, compute_dtype);
  }
  Var result = make_result(loss, "cross_entropy", {h, w},
                     [hi, wi, hv, wv, targets, lse, chunk, compute_dtype, fused, expected_grad,
                      pre_dh, pre_dw](const Tensor& g) {
                       const Device d = hv.device();
                       if (fused && g.data<float>()[0] == expected_grad) {  // fused: g is on the CPU too
                         if (pre_dh.defined()) accumulate_grad(*hi, pre_dh);
                         if (pre_dw.defined()) accumulate_grad(*wi, pre_dw);
                         return;
                       }
                       Tensor dh = Tensor::empty(hv.shape(), DType::kF32, d);
                       Tensor dw = Tensor::zeros(wv.shape(), DType::kF32, d);
                       kernels(d).cross_entropy_backward(dh, dw, g, hv, wv, targets, lse, chunk,
                                                         compute_dtype);
                       if (hi->requires_grad) accumulate_grad(*hi, dh);
                       if (wi->requires_grad) accumulate_grad(*wi, dw);
                     });
  const double logits_flops = 2.0 * hv.dim(0) * wv.dim(0) * hv.dim(1);
  if (fused) {  // the forward did the logits and each wanted gradient; the backward only adds
    op_flops(result, "cross_entropy",
             logits_flops * (1 + pre_dh.defined() + pre_dw.defined()), /*backward_flops=*/0);
  } else {
    op_flops(result, "cross_entropy", logits_flops);
  }
  return result;
}

}  // namespace cmoe::ag
