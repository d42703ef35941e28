// ops_routing.cpp — the CUDA column's routing adapters (core/cuda/kernels.h, formulas in
// core/ops/routing.h): routing weights and the z-loss, expert selection, the per-expert load
// and the dispatch's counting sort.
#include <algorithm>

#include "core/cuda/adapter_util.h"
#include "core/cuda/kernels.h"
#include "core/rng.h"

namespace cmoe::cuda {

using detail::expect;
using detail::f32;
using detail::i32;

void routing_weights_forward(Tensor& w, Tensor& denom, const Tensor& probs, const Tensor& idx, bool renorm) {
  const Device d = detail::device_of(probs, "routing_weights_forward");
  expect(w, DType::kF32, d, "routing_weights_forward", "w");
  expect(denom, DType::kF32, d, "routing_weights_forward", "denom");
  expect(probs, DType::kF32, d, "routing_weights_forward", "probs");
  expect(idx, DType::kI32, d, "routing_weights_forward", "idx");
  const int64_t n = idx.dim(0), k = idx.dim(1), e = probs.dim(1);
  CMOE_CHECK(probs.rank() == 2 && probs.dim(0) == n && w.numel() == n * k && denom.numel() == n,
             "routing_weights_forward: probs ", probs.str(), ", idx ", idx.str(), ", w ", w.str());
  check(api().routing_weights_forward_f32(f32(w), f32(denom), f32(probs), i32(idx), n, k, e, renorm ? 1 : 0,
                                          compute_stream()),
        "routing_weights_forward_f32");
}

void routing_weights_backward(Tensor& dprobs, const Tensor& dw, const Tensor& w, const Tensor& denom,
                              const Tensor& idx, bool renorm) {
  const Device d = detail::device_of(dprobs, "routing_weights_backward");
  for (const Tensor* t : std::initializer_list<const Tensor*>{&dprobs, &dw, &w, &denom}) expect(*t, DType::kF32, d, "routing_weights_backward", "a tensor");
  expect(idx, DType::kI32, d, "routing_weights_backward", "idx");
  const int64_t n = idx.dim(0), k = idx.dim(1), e = dprobs.dim(1);
  CMOE_CHECK(dprobs.rank() == 2 && dprobs.dim(0) == n && dw.numel() == n * k && w.numel() == n * k,
             "routing_weights_backward: dprobs ", dprobs.str(), ", dw ", dw.str(), ", idx ", idx.str());
  check(api().routing_weights_backward_f32(f32(dprobs), f32(dw), f32(w), f32(denom), i32(idx), n, k, e,
                                           renorm ? 1 : 0, compute_stream()),
        "routing_weights_backward_f32");
}

void z_loss_forward(Tensor& out, Tensor& lse, const Tensor& logits) {
  const Device d = detail::device_of(logits, "z_loss_forward");
  for (const Tensor* t : std::initializer_list<const Tensor*>{&out, &lse, &logits}) expect(*t, DType::kF32, d, "z_loss_forward", "a tensor");
  CMOE_CHECK(logits.rank() == 2 && out.numel() == 1 && lse.numel() == logits.dim(0), "z_loss_forward: out ",
             out.str(), ", lse ", lse.str(), ", logits ", logits.str());
  check(api().z_loss_forward_f32(f32(out), f32(lse), f32(logits), logits.dim(0), logits.dim(1), compute_stream()),
        "z_loss_forward_f32");
}

void z_loss_backward(Tensor& dlogits, const Tensor& dout, const Tensor& logits, const Tensor& lse) {
  const Device d = detail::device_of(logits, "z_loss_backward");
  for (const Tensor* t : std::initializer_list<const Tensor*>{&dlogits, &dout, &logits, &lse}) expect(*t, DType::kF32, d, "z_loss_backward", "a tensor");
  CMOE_CHECK(dlogits.shape() == logits.shape() && dout.numel() == 1 && lse.numel() == logits.dim(0),
             "z_loss_backward: dlogits ", dlogits.str(), ", dout ", dout.str(), ", lse ", lse.str());
  check(api().z_loss_backward_f32(f32(dlogits), f32(dout), f32(logits), f32(lse), logits.dim(0), logits.dim(1),
                                  compute_stream()),
        "z_loss_backward_f32");
}

void router_topk(Tensor& indices, const Tensor& probs, const Tensor& bias, bool disable_top1) {
  const Device d = detail::device_of(probs, "router_topk");
  expect(probs, DType::kF32, d, "router_topk", "probs");
  expect(indices, DType::kI32, d, "router_topk", "indices");
  const int64_t n = probs.dim(0), e = probs.dim(1);
  CMOE_CHECK(probs.rank() == 2 && indices.rank() == 2 && indices.dim(0) == n, "router_topk: probs ", probs.str(),
             ", indices ", indices.str());
  if (bias.defined()) {
    expect(bias, DType::kF32, d, "router_topk", "bias");
    CMOE_CHECK(bias.numel() == e, "router_topk: bias ", bias.str(), " for ", e, " experts");
  }
  check(api().router_topk_i32(indices.data<int32_t>(), f32(probs), f32(bias), n, e, indices.dim(1),
                              disable_top1 ? 1 : 0, compute_stream()),
        "router_topk_i32");
}

Tensor router_topp(const Tensor& probs, float top_p, bool disable_top1) {
  const Device d = detail::device_of(probs, "router_topp");
  expect(probs, DType::kF32, d, "router_topp", "probs");
  CMOE_CHECK(probs.rank() == 2, "router_topp: probs ", probs.str());
  const int64_t n = probs.dim(0), e = probs.dim(1);
  Tensor keep = Tensor::empty({n + 1}, DType::kI32, d);  // (N) kept per row, then the maximum
  int32_t* kp = keep.data<int32_t>();
  check(api().router_topp_count(kp, kp + n, f32(probs), n, e, top_p, disable_top1 ? 1 : 0, compute_stream()),
        "router_topp_count");
  int32_t k = 1;
  copy_bytes(&k, kCPU, kp + n, d, sizeof(k));  // the widest row sizes the result: one copy back
  Tensor idx = Tensor::empty({n, std::max(1, k)}, DType::kI32, d);
  check(api().router_topp_fill(idx.data<int32_t>(), f32(probs), n, e, idx.dim(1), top_p, disable_top1 ? 1 : 0,
                               compute_stream()),
        "router_topp_fill");
  return idx;
}

void router_hash(Tensor& indices, const Tensor& ids, int64_t num_experts, uint64_t seed) {
  const Device d = detail::device_of(indices, "router_hash");
  expect(indices, DType::kI32, d, "router_hash", "indices");
  expect(ids, DType::kI32, d, "router_hash", "ids");
  const int64_t n = indices.dim(0), k = indices.dim(1);
  CMOE_CHECK(ids.numel() == n && k <= num_experts, "router_hash: ", ids.str(), " for ", n, " tokens, ", k,
             " choices of ", num_experts);
  static const uint64_t kStream = rng_stream_id("router.hash_table");
  check(api().router_hash_i32(indices.data<int32_t>(), i32(ids), n, k, num_experts, seed, kStream, compute_stream()),
        "router_hash_i32");
}

void expert_load(Tensor& counts, Tensor& psum, const Tensor& idx, const Tensor& probs) {
  const Device d = detail::device_of(idx, "expert_load");
  expect(counts, DType::kI64, d, "expert_load", "counts");
  expect(psum, DType::kF32, d, "expert_load", "psum");
  expect(idx, DType::kI32, d, "expert_load", "idx");
  const int64_t e = counts.numel();
  CMOE_CHECK(psum.numel() == e, "expert_load: psum ", psum.str(), " for ", e, " experts");
  int64_t rows = 0;
  if (probs.defined()) {
    expect(probs, DType::kF32, d, "expert_load", "probs");
    CMOE_CHECK(probs.rank() == 2 && probs.dim(1) == e, "expert_load: probs ", probs.str(), " for ", e, " experts");
    rows = probs.dim(0);
  }
  check(api().expert_load(counts.data<int64_t>(), f32(psum), i32(idx), idx.numel(), f32(probs), rows, e,
                          compute_stream()),
        "expert_load");
}

void dispatch_sort(Tensor& token_of_slot, Tensor& pair_of_slot, const Tensor& idx, std::span<const int64_t> offsets,
                   int64_t capacity) {
  const Device d = detail::device_of(idx, "dispatch_sort");
  expect(idx, DType::kI32, d, "dispatch_sort", "idx");
  expect(token_of_slot, DType::kI32, d, "dispatch_sort", "token_of_slot");
  expect(pair_of_slot, DType::kI32, d, "dispatch_sort", "pair_of_slot");
  CMOE_CHECK(!offsets.empty() && idx.rank() == 2, "dispatch_sort: idx ", idx.str(), ", ", offsets.size(), " offsets");
  const int64_t e = static_cast<int64_t>(offsets.size()) - 1;
  CMOE_CHECK(token_of_slot.numel() == offsets[e] && pair_of_slot.numel() == offsets[e], "dispatch_sort: ",
             offsets[e], " slots, got ", token_of_slot.str());
  if (offsets[e] == 0) return;
  Tensor off = Tensor::empty({e + 1}, DType::kI64, d);
  copy_bytes(off.raw_data(), d, offsets.data(), kCPU, offsets.size_bytes());
  check(api().dispatch_sort_i32(token_of_slot.data<int32_t>(), pair_of_slot.data<int32_t>(), i32(idx), off.data<int64_t>(),
                                idx.numel(), idx.dim(1), e, capacity, compute_stream()),
        "dispatch_sort_i32");
}

}  // namespace cmoe::cuda
