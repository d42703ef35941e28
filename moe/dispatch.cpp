// dispatch.cpp — counting-sort dispatch and the expert FFN pipeline (see dispatch.h).
#include "moe/dispatch.h"

#include <algorithm>
#include <cmath>

#include "autograd/op_table.h"
#include "core/profiler.h"

namespace cmoe {

DispatchPlan dispatch_plan(const Tensor& indices, int64_t num_experts, float capacity_factor,
                           std::span<const int64_t> counts_in) {
  prof::Span span("dispatch_plan", prof::Cat::kOp);
  CMOE_CHECK(indices.dtype() == DType::kI32 && indices.rank() == 2, "dispatch_plan: indices ", indices.str());
  DispatchPlan plan;
  plan.num_tokens = indices.dim(0);
  plan.top_k = indices.dim(1);
  plan.num_experts = num_experts;
  const int64_t pairs = plan.num_tokens * plan.top_k;
  const int64_t capacity =
      capacity_factor > 0 ? static_cast<int64_t>(std::ceil(capacity_factor * pairs / num_experts)) : pairs;
  const Device dev = indices.device();
  const ag::OpKernels& K = ag::kernels(dev);

  // Pass 1: pairs kept per expert (token order decides who stays under the capacity).
  std::vector<int64_t> counts(num_experts, 0);
  int64_t empty_slots = 0;
  if (dev.is_cpu()) {
    const int32_t* idx = indices.data<int32_t>();
    for (int64_t p = 0; p < pairs; ++p) {
      const int32_t e = idx[p];
      if (e == -1) {  // top-p padding: no expert in this slot
        ++empty_slots;
        continue;
      }
      CMOE_CHECK(e >= 0 && e < num_experts, "expert id ", e, " outside [0, ", num_experts, ")");
      if (counts[e] < capacity) ++counts[e];
    }
  } else {
    // Device indices: the per-expert counts come from the router's load (one copy to the host),
    // or from an expert_load here; the first `capacity` pairs of each expert are kept.
    std::vector<int64_t> all(counts_in.begin(), counts_in.end());
    if (all.empty()) {
      Tensor c = Tensor::empty({num_experts}, DType::kI64, dev), unused = Tensor::empty({num_experts}, DType::kF32, dev);
      K.expert_load(c, unused, indices, Tensor());
      const Tensor hc = c.to(kCPU);
      all.assign(hc.data<int64_t>(), hc.data<int64_t>() + num_experts);
    }
    CMOE_CHECK(static_cast<int64_t>(all.size()) == num_experts, "dispatch_plan: ", all.size(), " counts for ",
               num_experts, " experts");
    empty_slots = pairs;
    for (int64_t e = 0; e < num_experts; ++e) empty_slots -= all[e], counts[e] = std::min(all[e], capacity);
  }
  auto offsets = std::make_shared<std::vector<int64_t>>(num_experts + 1, 0);
  for (int64_t e = 0; e < num_experts; ++e) (*offsets)[e + 1] = (*offsets)[e] + counts[e];
  const int64_t kept = (*offsets)[num_experts];
  plan.dropped = pairs - empty_slots - kept;

  // Pass 2: stable placement — within an expert's segment, slots follow token order.
  plan.token_of_slot = Tensor::empty({kept}, DType::kI32, dev);
  plan.pair_of_slot = Tensor::empty({kept}, DType::kI32, dev);
  K.dispatch_sort(plan.token_of_slot, plan.pair_of_slot, indices, *offsets, capacity);
  plan.counts = std::move(counts);
  plan.offsets = std::move(offsets);
  return plan;
}

ag::Var dispatch_experts(const ag::Var& u, const DispatchPlan& plan, const ag::Var& weights,
                         const ExpertWeights& experts, DType compute_dtype) {
  CMOE_CHECK(u.value().rank() == 2 && u.value().dim(0) == plan.num_tokens, "dispatch_experts: u ",
             u.value().str(), " for ", plan.num_tokens, " tokens");
  CMOE_CHECK(weights.value().dim(0) == plan.num_tokens && weights.value().dim(1) == plan.top_k,
             "dispatch_experts: weights ", weights.value().str());
  ag::Var x = ag::gather_rows(u, plan.token_of_slot);                                   // (M, d)
  ag::Var g = ag::grouped_linear(x, experts.w1, plan.offsets, compute_dtype);           // (M, F)
  ag::Var up = ag::grouped_linear(x, experts.w3, plan.offsets, compute_dtype);          // (M, F)
  ag::Var h = ag::swiglu(g, up, compute_dtype);  // (M, F), in the compute dtype: only matmuls use it
  ag::Var y = ag::grouped_linear(h, experts.w2, plan.offsets, compute_dtype);                 // (M, d)
  const int64_t pairs = plan.num_tokens * plan.top_k;
  ag::Var w = ag::reshape(ag::gather_rows(ag::reshape(weights, {pairs, 1}), plan.pair_of_slot),
                          {plan.pair_of_slot.numel()});                                 // (M)
  return ag::scatter_add_rows(y, plan.token_of_slot, w, plan.num_tokens);               // (N, d)
}

ag::Var swiglu_ffn(const ag::Var& x, const ag::Var& w1, const ag::Var& w3, const ag::Var& w2,
                   DType compute_dtype) {
  ag::Var h = ag::swiglu(ag::linear(x, w1, compute_dtype), ag::linear(x, w3, compute_dtype), compute_dtype);
  return ag::linear(h, w2, compute_dtype);
}

}  // namespace cmoe
