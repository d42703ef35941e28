// ops_routing.cpp — autograd wrappers for the router's differentiable pieces: the routing
// weights of the chosen experts and the z-loss. Each saves what its backward kernel reads
// (weights and their denominators; the row log-sum-exp).
#include "autograd/op_table.h"
#include "autograd/ops.h"
#include "core/profiler.h"

namespace cmoe::ag {

Var routing_weights(const Var& probs, const Tensor& idx, bool renorm) {
  prof::Span span("routing_weights", prof::Cat::kOp);
  CMOE_CHECK(probs.value().rank() == 2 && idx.rank() == 2 && idx.dim(0) == probs.value().dim(0) &&
                 idx.dtype() == DType::kI32 && idx.device() == probs.value().device(),
             "routing_weights: probs ", probs.value().str(), ", idx ", idx.str());
  const int64_t N = idx.dim(0), K = idx.dim(1);
  const Device dev = probs.value().device();
  Tensor w = Tensor::empty({N, K}, DType::kF32, dev);
  Tensor denom = Tensor::empty({N}, DType::kF32, dev);
  kernels(dev).routing_weights_forward(w, denom, probs.value(), idx, renorm);
  auto pi = probs.impl();
  return make_result(w, "routing_weights", {probs}, [pi, idx, w, denom, renorm](const Tensor& g) {
    Tensor dprobs = Tensor::empty(pi->value.shape(), DType::kF32, g.device());
    kernels(g.device()).routing_weights_backward(dprobs, g, w, denom, idx, renorm);
    accumulate_grad(*pi, dprobs);
  });
}

Var z_loss(const Var& logits) {
  prof::Span span("z_loss", prof::Cat::kOp);
  CMOE_CHECK(logits.value().rank() == 2, "z_loss: logits ", logits.value().str(), ", want (N, E)");
  const Device dev = logits.value().device();
  Tensor out = Tensor::empty(Shape{}, DType::kF32, dev);
  Tensor lse = Tensor::empty({logits.value().dim(0)}, DType::kF32, dev);  // (N)
  kernels(dev).z_loss_forward(out, lse, logits.value());
  auto li = logits.impl();
  Tensor lv = logits.value();
  return make_result(out, "z_loss", {logits}, [li, lv, lse](const Tensor& g) {
    Tensor d = Tensor::empty(lv.shape(), DType::kF32, g.device());
    kernels(g.device()).z_loss_backward(d, g, lv, lse);
    accumulate_grad(*li, d);
  });
}

}  // namespace cmoe::ag
