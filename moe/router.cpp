// router.cpp — routing decisions and the differentiable routing weights (see router.h).
#include "moe/router.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/rng.h"

namespace cmoe {

namespace {

constexpr float kRenormEps = 1e-9f;

// w[n, j] = s[n, idx[n, j]] / S_n (renorm) or s[n, idx[n, j]]; S_n = max(sum_j s[n, idx], eps).
// Backward: ds[n, idx_j] = (dw_j - sum_i dw_i w_i) / S_n with renorm, dw_j without.
ag::Var routing_weights(const ag::Var& probs, const Tensor& idx, bool renorm) {
  const int64_t N = idx.dim(0), K = idx.dim(1), E = probs.value().dim(1);
  Tensor w = Tensor::zeros({N, K}, DType::kF32);
  Tensor denom = Tensor::empty({N}, DType::kF32);
  const float* S = probs.value().data<float>();
  const int32_t* I = idx.data<int32_t>();
  float* W = w.data<float>();
  float* Z = denom.data<float>();
  for (int64_t n = 0; n < N; ++n) {
    double tot = 0;
    for (int64_t j = 0; j < K; ++j)
      if (I[n * K + j] >= 0) tot += S[n * E + I[n * K + j]];
    Z[n] = renorm ? std::max(static_cast<float>(tot), kRenormEps) : 1.0f;
    for (int64_t j = 0; j < K; ++j)
      if (I[n * K + j] >= 0) W[n * K + j] = S[n * E + I[n * K + j]] / Z[n];
  }
  auto pi = probs.impl();
  return ag::make_result(w, "routing_weights", {probs}, [pi, idx, w, denom, renorm, N, K, E](const Tensor& g) {
    Tensor ds = Tensor::zeros({N, E}, DType::kF32);
    const float *gw = g.data<float>(), *wv = w.data<float>(), *zv = denom.data<float>();
    const int32_t* iv = idx.data<int32_t>();
    float* dsv = ds.data<float>();
    for (int64_t n = 0; n < N; ++n) {
      double dot = 0;
      if (renorm)
        for (int64_t j = 0; j < K; ++j) dot += static_cast<double>(gw[n * K + j]) * wv[n * K + j];
      for (int64_t j = 0; j < K; ++j) {
        if (iv[n * K + j] < 0) continue;
        dsv[n * E + iv[n * K + j]] += static_cast<float>((gw[n * K + j] - dot) / zv[n]);
      }
    }
    ag::accumulate_grad(*pi, ds);
  });
}

// z = mean_n lse(logits_n)^2; dz/dlogits[n] = 2 lse_n softmax(logits_n) / N.
ag::Var z_loss(const ag::Var& logits) {
  const int64_t N = logits.value().dim(0), E = logits.value().dim(1);
  Tensor lse = Tensor::empty({N}, DType::kF32);
  const float* L = logits.value().data<float>();
  double acc = 0;
  for (int64_t n = 0; n < N; ++n) {
    float m = *std::max_element(L + n * E, L + (n + 1) * E);
    double s = 0;
    for (int64_t e = 0; e < E; ++e) s += std::exp(static_cast<double>(L[n * E + e]) - m);
    lse.data<float>()[n] = static_cast<float>(m + std::log(s));
    acc += static_cast<double>(lse.data<float>()[n]) * lse.data<float>()[n];
  }
  Tensor out = Tensor::full({}, static_cast<float>(acc / N));
  auto li = logits.impl();
  Tensor lv = logits.value();
  return ag::make_result(out, "z_loss", {logits}, [li, lv, lse, N, E](const Tensor& g) {
    Tensor d = Tensor::empty({N, E}, DType::kF32);
    const float *lg = lv.data<float>(), *zv = lse.data<float>();
    const float scale = 2.0f * g.data<float>()[0] / static_cast<float>(N);
    for (int64_t n = 0; n < N; ++n)
      for (int64_t e = 0; e < E; ++e)
        d.data<float>()[n * E + e] = scale * zv[n] * std::exp(lg[n * E + e] - zv[n]);
    ag::accumulate_grad(*li, d);
  });
}

}  // namespace

void hash_experts(int32_t* out, int64_t token_id, int64_t k, int64_t num_experts, uint64_t seed) {
  static const uint64_t kStream = rng_stream_id("router.hash_table");
  for (int64_t j = 0; j < k; ++j) {
    // Draw from the experts not yet chosen, so the k choices are distinct.
    int64_t r = rng_u32(seed, kStream, static_cast<uint64_t>(token_id) * 64 + j) % (num_experts - j);
    int32_t e = 0;
    for (;; ++e) {
      bool taken = std::find(out, out + j, e) != out + j;
      if (!taken && r-- == 0) break;
    }
    out[j] = e;
  }
}

RouterOutput route(const ag::Var& u, const ag::Var& w_router, const Tensor& token_ids,
                   const RouterOptions& opt, const Tensor& bias) {
  const int64_t N = u.value().dim(0), E = opt.num_experts;
  RouterOutput out;
  out.counts.assign(E, 0);

  if (opt.kind == RouterKind::kHash) {
    CMOE_CHECK(token_ids.numel() == N, "hash router: ", token_ids.numel(), " ids for ", N, " tokens");
    out.indices = Tensor::empty({N, opt.top_k}, DType::kI32);
    Tensor w = Tensor::full({N, opt.top_k}, 1.0f / static_cast<float>(opt.top_k));
    for (int64_t n = 0; n < N; ++n) {
      hash_experts(out.indices.data<int32_t>() + n * opt.top_k, token_ids.data<int32_t>()[n], opt.top_k, E,
                   opt.hash_seed);
      for (int64_t j = 0; j < opt.top_k; ++j) ++out.counts[out.indices.data<int32_t>()[n * opt.top_k + j]];
    }
    out.weights = ag::Var(w);
    return out;
  }

  ag::Var logits = ag::linear(u, w_router);  // (N, E), f32 always
  ag::Var probs = ag::softmax(logits);
  const float* S = probs.value().data<float>();
  const float* B = bias.defined() ? bias.data<float>() : nullptr;

  // Selection happens on (s + b) with the top-1 excluded where asked; it has no gradient.
  int64_t K = opt.top_k;
  std::vector<int32_t> chosen;
  if (opt.kind == RouterKind::kTopK) {
    chosen.assign(N * K, -1);
    std::vector<int32_t> order(E);
    for (int64_t n = 0; n < N; ++n) {
      const float* s = S + n * E;
      auto score = [&](int32_t e) { return B ? s[e] + B[e] : s[e]; };
      std::iota(order.begin(), order.end(), 0);
      int32_t top1 = static_cast<int32_t>(std::max_element(s, s + E) - s);
      auto end = order.end();
      if (opt.disable_top1) end = std::remove(order.begin(), order.end(), top1);
      const int64_t avail = end - order.begin();
      std::partial_sort(order.begin(), order.begin() + std::min(K, avail), end, [&](int32_t a, int32_t b) {
        return score(a) > score(b) || (score(a) == score(b) && a < b);
      });
      for (int64_t j = 0; j < std::min(K, avail); ++j) chosen[n * K + j] = order[j];
    }
  } else {  // top-p
    std::vector<std::vector<int32_t>> keep(N);
    std::vector<int32_t> order(E);
    K = 1;
    for (int64_t n = 0; n < N; ++n) {
      const float* s = S + n * E;
      std::iota(order.begin(), order.end(), 0);
      std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return s[a] > s[b]; });
      double cum = 0;
      for (int64_t j = opt.disable_top1 ? 1 : 0; j < E; ++j) {
        keep[n].push_back(order[j]);
        cum += s[order[j]];
        if (cum > opt.top_p) break;
      }
      K = std::max<int64_t>(K, keep[n].size());
    }
    chosen.assign(N * K, -1);
    for (int64_t n = 0; n < N; ++n)
      for (size_t j = 0; j < keep[n].size(); ++j) chosen[n * K + j] = keep[n][j];
  }
  out.indices = Tensor::from_ints({N, K}, chosen);
  int64_t routed = 0;
  for (int32_t e : chosen)
    if (e >= 0) ++out.counts[e], ++routed;

  const bool renorm = opt.kind == RouterKind::kTopK && K > 1;
  out.weights = routing_weights(probs, out.indices, renorm);

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
  if (opt.stats_group != nullptr && opt.stats_group->size() > 1) {
    // Counts exactly (i64); probability sums in f32 (they only enter the reported value).
    Tensor c = Tensor::empty({E + 2}, DType::kI64);
    for (int64_t e = 0; e < E; ++e) c.data<int64_t>()[e] = out.counts[e];
    c.data<int64_t>()[E] = routed;
    c.data<int64_t>()[E + 1] = N;
    Tensor p = Tensor::empty({E}, DType::kF32);
    for (int64_t e = 0; e < E; ++e) p.data<float>()[e] = static_cast<float>(psum[e]);
    parallel::comm_or_abort(opt.stats_group->all_reduce(c), "router counts");
    parallel::comm_or_abort(opt.stats_group->all_reduce(p), "router probability sums");
    for (int64_t e = 0; e < E; ++e) out.counts[e] = c.data<int64_t>()[e], psum[e] = p.data<float>()[e];
    routed = c.data<int64_t>()[E];
    total_tokens = c.data<int64_t>()[E + 1];
  }
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
    ag::Var z = ag::scale(z_loss(logits), opt.z_coef);
    out.loss = out.loss.defined() ? ag::add(out.loss, z) : z;
  }
  return out;
}

}  // namespace cmoe
