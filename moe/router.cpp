// router.cpp — routing decisions and the differentiable routing weights (see router.h).
#include "moe/router.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "autograd/op_table.h"
#include "core/profiler.h"
#include "parallel/staging.h"

namespace cmoe {

void hash_experts(int32_t* out, int64_t token_id, int64_t k, int64_t num_experts, uint64_t seed) {
  ops::hash_expert_choices(out, token_id, k, num_experts, seed);
}

namespace {

// The device path of route(): the same decisions and losses from the op table's CUDA column, with
// one device-to-host copy of the per-expert load (the counts the step's report, the balance loss
// and the dispatch's problem sizes need on the host). Balance loss as
// coef * E / N * sum_n sum_e s[n, e] f_e, the f-weighted row sums taken by a (1, E) linear.
// The balance loss's statistics summed over the router's stats group (data-parallel ranks see
// different tokens): counts, routed pairs and tokens exactly (i64); probability sums in f32
// (they only enter the reported value). Nothing to do on one rank.
void reduce_balance_stats(const RouterOptions& opt, std::vector<int64_t>& counts, std::vector<double>& psum,
                          int64_t& routed, int64_t& total_tokens) {
  if (opt.stats_group == nullptr || opt.stats_group->size() <= 1) return;
  const auto E = static_cast<int64_t>(counts.size());
  Tensor c = Tensor::empty({E + 2}, DType::kI64);
  Tensor p = Tensor::empty({E}, DType::kF32);
  for (int64_t e = 0; e < E; ++e) c.data<int64_t>()[e] = counts[e], p.data<float>()[e] = static_cast<float>(psum[e]);
  c.data<int64_t>()[E] = routed;
  c.data<int64_t>()[E + 1] = total_tokens;
  parallel::comm_or_abort(parallel::all_reduce_host(*opt.stats_group, c), "router counts");
  parallel::comm_or_abort(parallel::all_reduce_host(*opt.stats_group, p), "router probability sums");
  for (int64_t e = 0; e < E; ++e) counts[e] = c.data<int64_t>()[e], psum[e] = p.data<float>()[e];
  routed = c.data<int64_t>()[E];
  total_tokens = c.data<int64_t>()[E + 1];
}

RouterOutput route_device(const ag::Var& u, const ag::Var& w_router, const Tensor& token_ids,
                          const RouterOptions& opt, const Tensor& bias) {
  const int64_t N = u.value().dim(0), E = opt.num_experts;
  const Device dev = u.value().device();
  const ag::OpKernels& K = ag::kernels(dev);
  RouterOutput out;
  ag::Var logits, probs;
  if (opt.kind == RouterKind::kHash) {
    CMOE_CHECK(token_ids.numel() == N && token_ids.device() == dev, "hash router: ids ", token_ids.str(), " for ", N,
               " tokens on ", dev.str());
    out.indices = Tensor::empty({N, opt.top_k}, DType::kI32, dev);
    K.router_hash(out.indices, token_ids.view({N}), E, opt.hash_seed);
    out.weights = ag::Var(Tensor::full({N, opt.top_k}, 1.0f / static_cast<float>(opt.top_k), dev));
  } else {
    logits = ag::linear(u, w_router);  // (N, E), f32 always
    probs = ag::softmax(logits);
    if (opt.kind == RouterKind::kTopK) {
      out.indices = Tensor::empty({N, opt.top_k}, DType::kI32, dev);
      K.router_topk(out.indices, probs.value(), bias, opt.disable_top1);
    } else {
      out.indices = K.router_topp(probs.value(), opt.top_p, opt.disable_top1);
    }
  }
  Tensor counts = Tensor::empty({E}, DType::kI64, dev), psum = Tensor::empty({E}, DType::kF32, dev);
  K.expert_load(counts, psum, out.indices, probs.defined() ? probs.value() : Tensor());
  const Tensor hc = counts.to(kCPU), hp = psum.to(kCPU);
  out.local_counts.assign(hc.data<int64_t>(), hc.data<int64_t>() + E);
  out.counts = out.local_counts;
  if (opt.kind == RouterKind::kHash) return out;

  int64_t routed = 0;
  for (int64_t c : out.counts) routed += c;
  std::vector<double> ps(hp.data<float>(), hp.data<float>() + E);
  int64_t total_tokens = N;
  reduce_balance_stats(opt, out.counts, ps, routed, total_tokens);
  std::vector<float> f(E);
  for (int64_t e = 0; e < E; ++e) f[e] = routed ? static_cast<float>(out.counts[e]) / routed : 0.0f;
  double acc = 0;
  for (int64_t e = 0; e < E; ++e) acc += f[e] * ps[e] / total_tokens;
  out.aux_value = E * acc;

  const bool renorm = opt.kind == RouterKind::kTopK && out.indices.dim(1) > 1;
  out.weights = ag::routing_weights(probs, out.indices, renorm);
  if (opt.aux_coef > 0) {
    ag::Var fv(Tensor::from_floats({1, E}, f).to(dev));  // (1, E)
    out.loss = ag::scale(ag::sum(ag::linear(probs, fv)), opt.aux_coef * static_cast<float>(E) / N);
  }
  if (opt.z_coef > 0) {
    ag::Var z = ag::scale(ag::z_loss(logits), opt.z_coef);
    out.loss = out.loss.defined() ? ag::add(out.loss, z) : z;
  }
  return out;
}

}  // namespace

RouterOutput route(const ag::Var& u, const ag::Var& w_router, const Tensor& token_ids,
                   const RouterOptions& opt, const Tensor& bias) {
  prof::Span span("router", prof::Cat::kOp);  // selection and statistics; its ops nest inside
  if (!u.value().device().is_cpu()) return route_device(u, w_router, token_ids, opt, bias);
  const int64_t N = u.value().dim(0), E = opt.num_experts;
  const ag::OpKernels& K = ag::cpu_kernels();
  RouterOutput out;
  out.counts.assign(E, 0);

  if (opt.kind == RouterKind::kHash) {
    CMOE_CHECK(token_ids.numel() == N, "hash router: ", token_ids.numel(), " ids for ", N, " tokens");
    out.indices = Tensor::empty({N, opt.top_k}, DType::kI32);
    K.router_hash(out.indices, token_ids.view({N}), E, opt.hash_seed);
    Tensor w = Tensor::full({N, opt.top_k}, 1.0f / static_cast<float>(opt.top_k));
    for (int64_t p = 0; p < N * opt.top_k; ++p) ++out.counts[out.indices.data<int32_t>()[p]];
    out.weights = ag::Var(w);
    return out;
  }

  ag::Var logits = ag::linear(u, w_router);  // (N, E), f32 always
  ag::Var probs = ag::softmax(logits);
  const float* S = probs.value().data<float>();

  // Selection happens on (s + b) with the top-1 excluded where asked; it has no gradient.
  if (opt.kind == RouterKind::kTopK) {
    out.indices = Tensor::empty({N, opt.top_k}, DType::kI32);
    K.router_topk(out.indices, probs.value(), bias, opt.disable_top1);
  } else {
    out.indices = K.router_topp(probs.value(), opt.top_p, opt.disable_top1);
  }
  const int64_t Kc = out.indices.dim(1);
  int64_t routed = 0;
  for (int64_t p = 0; p < N * Kc; ++p) {
    const int32_t e = out.indices.data<int32_t>()[p];
    if (e >= 0) ++out.counts[e], ++routed;
  }

  const bool renorm = opt.kind == RouterKind::kTopK && Kc > 1;
  out.weights = ag::routing_weights(probs, out.indices, renorm);

  // Balance loss: coef * E * sum_e f_e * P_e, written as sum(s * F) * coef * E / N with
  // F[n, e] = f_e, so its gradient flows into the router through the softmax.
  std::vector<double> psum(E, 0.0);
  for (int64_t n = 0; n < N; ++n) {
    double top = 0, ent = 0;
    for (int64_t e = 0; e < E; ++e) {
      const double s = S[n * E + e];
      psum[e] += s;
      top = std::max(top, s);
      if (s > 0) ent -= s * std::log(s);
    }
    out.top1_prob_sum += top;
    out.entropy_sum += ent;
  }
  int64_t total_tokens = N;
  reduce_balance_stats(opt, out.counts, psum, routed, total_tokens);
  std::vector<float> f(E);
  for (int64_t e = 0; e < E; ++e) f[e] = routed ? static_cast<float>(out.counts[e]) / routed : 0.0f;
  {
    double acc = 0;
    for (int64_t e = 0; e < E; ++e) acc += f[e] * psum[e] / total_tokens;
    out.aux_value = E * acc;
  }
  if (opt.aux_coef > 0) {
    Tensor F = Tensor::empty({N, E}, DType::kF32);
    for (int64_t n = 0; n < N; ++n) std::copy(f.begin(), f.end(), F.data<float>() + n * E);
    out.loss = ag::scale(ag::sum(ag::mul(probs, ag::Var(F))), opt.aux_coef * static_cast<float>(E) / N);
  }
  if (opt.z_coef > 0) {
    ag::Var z = ag::scale(ag::z_loss(logits), opt.z_coef);
    out.loss = out.loss.defined() ? ag::add(out.loss, z) : z;
  }
  return out;
}

}  // namespace cmoe
