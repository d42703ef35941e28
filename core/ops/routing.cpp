// routing.cpp — the router's and dispatcher's CPU kernels (see routing.h). Serial loops: a
// router row is E = 8..256 floats and the whole batch a few hundred thousand, a small share of a
// step; their results are the reference the CUDA column is checked against.
#include "core/ops/routing.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "core/rng.h"

namespace cmoe::ops {

namespace {

constexpr float kRenormEps = 1e-9f;

void check_rows(const Tensor& t, int64_t n, int64_t c, DType dtype, const char* op, const char* what) {
  CMOE_CHECK(t.defined() && t.device().is_cpu() && t.dtype() == dtype && t.rank() == 2 && t.dim(0) == n &&
                 t.dim(1) == c,
             op, ": ", what, " is ", t.str(), ", want ", dtype_name(dtype), " (", n, ", ", c, ") on cpu");
}

}  // namespace

void routing_weights_forward(Tensor& w, Tensor& denom, const Tensor& probs, const Tensor& idx, bool renorm) {
  const int64_t N = idx.dim(0), K = idx.dim(1), E = probs.dim(1);
  check_rows(probs, N, E, DType::kF32, "routing_weights_forward", "probs");
  check_rows(idx, N, K, DType::kI32, "routing_weights_forward", "idx");
  check_rows(w, N, K, DType::kF32, "routing_weights_forward", "w");
  CMOE_CHECK(denom.dtype() == DType::kF32 && denom.numel() == N, "routing_weights_forward: denom ", denom.str());
  const float* S = probs.data<float>();
  const int32_t* I = idx.data<int32_t>();
  float* W = w.data<float>();
  float* Z = denom.data<float>();
  for (int64_t n = 0; n < N; ++n) {
    double tot = 0;
    for (int64_t j = 0; j < K; ++j)
      if (I[n * K + j] >= 0) tot += S[n * E + I[n * K + j]];
    Z[n] = renorm ? std::max(static_cast<float>(tot), kRenormEps) : 1.0f;
    for (int64_t j = 0; j < K; ++j) W[n * K + j] = I[n * K + j] >= 0 ? S[n * E + I[n * K + j]] / Z[n] : 0.0f;
  }
}

void routing_weights_backward(Tensor& dprobs, const Tensor& dw, const Tensor& w, const Tensor& denom,
                              const Tensor& idx, bool renorm) {
  const int64_t N = idx.dim(0), K = idx.dim(1), E = dprobs.dim(1);
  check_rows(dprobs, N, E, DType::kF32, "routing_weights_backward", "dprobs");
  check_rows(dw, N, K, DType::kF32, "routing_weights_backward", "dw");
  check_rows(w, N, K, DType::kF32, "routing_weights_backward", "w");
  check_rows(idx, N, K, DType::kI32, "routing_weights_backward", "idx");
  dprobs.zero_();
  const float *gw = dw.data<float>(), *wv = w.data<float>(), *zv = denom.data<float>();
  const int32_t* iv = idx.data<int32_t>();
  float* dsv = dprobs.data<float>();
  for (int64_t n = 0; n < N; ++n) {
    double dot = 0;
    if (renorm)
      for (int64_t j = 0; j < K; ++j) dot += static_cast<double>(gw[n * K + j]) * wv[n * K + j];
    for (int64_t j = 0; j < K; ++j) {
      if (iv[n * K + j] < 0) continue;
      dsv[n * E + iv[n * K + j]] += static_cast<float>((gw[n * K + j] - dot) / zv[n]);
    }
  }
}

void z_loss_forward(Tensor& out, Tensor& lse, const Tensor& logits) {
  const int64_t N = logits.dim(0), E = logits.dim(1);
  check_rows(logits, N, E, DType::kF32, "z_loss_forward", "logits");
  CMOE_CHECK(out.dtype() == DType::kF32 && out.numel() == 1 && lse.dtype() == DType::kF32 && lse.numel() == N,
             "z_loss_forward: out ", out.str(), ", lse ", lse.str());
  const float* L = logits.data<float>();
  float* Z = lse.data<float>();
  double acc = 0;
  for (int64_t n = 0; n < N; ++n) {
    float m = *std::max_element(L + n * E, L + (n + 1) * E);
    double s = 0;
    for (int64_t e = 0; e < E; ++e) s += std::exp(static_cast<double>(L[n * E + e]) - m);
    Z[n] = static_cast<float>(m + std::log(s));
    acc += static_cast<double>(Z[n]) * Z[n];
  }
  out.data<float>()[0] = static_cast<float>(acc / N);
}

void z_loss_backward(Tensor& dlogits, const Tensor& dout, const Tensor& logits, const Tensor& lse) {
  const int64_t N = logits.dim(0), E = logits.dim(1);
  check_rows(logits, N, E, DType::kF32, "z_loss_backward", "logits");
  check_rows(dlogits, N, E, DType::kF32, "z_loss_backward", "dlogits");
  const float *lg = logits.data<float>(), *zv = lse.data<float>();
  const float scale = 2.0f * dout.data<float>()[0] / static_cast<float>(N);
  float* d = dlogits.data<float>();
  for (int64_t n = 0; n < N; ++n)
    for (int64_t e = 0; e < E; ++e) d[n * E + e] = scale * zv[n] * std::exp(lg[n * E + e] - zv[n]);
}

void router_topk(Tensor& indices, const Tensor& probs, const Tensor& bias, bool disable_top1) {
  const int64_t N = indices.dim(0), K = indices.dim(1), E = probs.dim(1);
  check_rows(probs, N, E, DType::kF32, "router_topk", "probs");
  check_rows(indices, N, K, DType::kI32, "router_topk", "indices");
  CMOE_CHECK(!bias.defined() || (bias.dtype() == DType::kF32 && bias.numel() == E), "router_topk: bias ", bias.str());
  const float* S = probs.data<float>();
  const float* B = bias.defined() ? bias.data<float>() : nullptr;
  int32_t* chosen = indices.data<int32_t>();
  std::fill(chosen, chosen + N * K, -1);
  std::vector<int32_t> order(E);
  for (int64_t n = 0; n < N; ++n) {
    const float* s = S + n * E;
    auto score = [&](int32_t e) { return B ? s[e] + B[e] : s[e]; };
    std::iota(order.begin(), order.end(), 0);
    int32_t top1 = static_cast<int32_t>(std::max_element(s, s + E) - s);
    auto end = order.end();
    if (disable_top1) end = std::remove(order.begin(), order.end(), top1);
    const int64_t avail = end - order.begin();
    std::partial_sort(order.begin(), order.begin() + std::min(K, avail), end, [&](int32_t a, int32_t b) {
      return score(a) > score(b) || (score(a) == score(b) && a < b);
    });
    for (int64_t j = 0; j < std::min(K, avail); ++j) chosen[n * K + j] = order[j];
  }
}

Tensor router_topp(const Tensor& probs, float top_p, bool disable_top1) {
  const int64_t N = probs.dim(0), E = probs.dim(1);
  check_rows(probs, N, E, DType::kF32, "router_topp", "probs");
  const float* S = probs.data<float>();
  std::vector<std::vector<int32_t>> keep(N);
  std::vector<int32_t> order(E);
  int64_t K = 1;
  for (int64_t n = 0; n < N; ++n) {
    const float* s = S + n * E;
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return s[a] > s[b]; });
    double cum = 0;
    for (int64_t j = disable_top1 ? 1 : 0; j < E; ++j) {
      keep[n].push_back(order[j]);
      cum += s[order[j]];
      if (cum > top_p) break;
    }
    K = std::max<int64_t>(K, keep[n].size());
  }
  std::vector<int32_t> chosen(N * K, -1);
  for (int64_t n = 0; n < N; ++n)
    for (size_t j = 0; j < keep[n].size(); ++j) chosen[n * K + j] = keep[n][j];
  return Tensor::from_ints({N, K}, chosen);
}

void hash_expert_choices(int32_t* out, int64_t token_id, int64_t k, int64_t num_experts, uint64_t seed) {
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

void router_hash(Tensor& indices, const Tensor& ids, int64_t num_experts, uint64_t seed) {
  const int64_t N = indices.dim(0), K = indices.dim(1);
  check_rows(indices, N, K, DType::kI32, "router_hash", "indices");
  CMOE_CHECK(ids.dtype() == DType::kI32 && ids.numel() == N && ids.device().is_cpu(), "router_hash: ", ids.str(),
             " for ", N, " tokens");
  CMOE_CHECK(K <= num_experts, "router_hash: ", K, " distinct choices of ", num_experts, " experts");
  for (int64_t n = 0; n < N; ++n)
    hash_expert_choices(indices.data<int32_t>() + n * K, ids.data<int32_t>()[n], K, num_experts, seed);
}

void expert_load(Tensor& counts, Tensor& psum, const Tensor& idx, const Tensor& probs) {
  const int64_t E = counts.numel();
  CMOE_CHECK(counts.dtype() == DType::kI64 && psum.dtype() == DType::kF32 && psum.numel() == E &&
                 idx.dtype() == DType::kI32,
             "expert_load: counts ", counts.str(), ", psum ", psum.str(), ", idx ", idx.str());
  int64_t* c = counts.data<int64_t>();
  std::fill(c, c + E, 0);
  const int32_t* I = idx.data<int32_t>();
  for (int64_t p = 0, P = idx.numel(); p < P; ++p) {
    CMOE_CHECK(I[p] < E, "expert_load: expert id ", I[p], " outside [0, ", E, ")");
    if (I[p] >= 0) ++c[I[p]];
  }
  float* ps = psum.data<float>();
  if (!probs.defined()) {
    std::fill(ps, ps + E, 0.0f);
    return;
  }
  const int64_t N = probs.dim(0);
  check_rows(probs, N, E, DType::kF32, "expert_load", "probs");
  const float* S = probs.data<float>();
  std::vector<double> acc(E, 0.0);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t e = 0; e < E; ++e) acc[e] += S[n * E + e];
  for (int64_t e = 0; e < E; ++e) ps[e] = static_cast<float>(acc[e]);
}

void dispatch_sort(Tensor& token_of_slot, Tensor& pair_of_slot, const Tensor& idx, std::span<const int64_t> offsets,
                   int64_t capacity) {
  CMOE_CHECK(idx.dtype() == DType::kI32 && idx.rank() == 2 && idx.device().is_cpu(), "dispatch_sort: idx ", idx.str());
  CMOE_CHECK(!offsets.empty(), "dispatch_sort: no offsets");
  const int64_t E = static_cast<int64_t>(offsets.size()) - 1, K = idx.dim(1), P = idx.numel();
  const int64_t M = offsets[E];
  CMOE_CHECK(token_of_slot.dtype() == DType::kI32 && token_of_slot.numel() == M &&
                 pair_of_slot.dtype() == DType::kI32 && pair_of_slot.numel() == M,
             "dispatch_sort: ", M, " slots, got ", token_of_slot.str(), " and ", pair_of_slot.str());
  const int32_t* I = idx.data<int32_t>();
  int32_t* tok = token_of_slot.data<int32_t>();
  int32_t* pair = pair_of_slot.data<int32_t>();
  std::vector<int64_t> seen(E, 0), cursor(offsets.begin(), offsets.end() - 1);
  for (int64_t p = 0; p < P; ++p) {
    const int32_t e = I[p];
    if (e < 0) continue;
    CMOE_CHECK(e < E, "dispatch_sort: expert id ", e, " outside [0, ", E, ")");
    if (seen[e]++ >= capacity) continue;
    const int64_t s = cursor[e]++;
    CMOE_CHECK(s < offsets[e + 1], "dispatch_sort: expert ", e, " has more kept pairs than its segment");
    tok[s] = static_cast<int32_t>(p / K);
    pair[s] = static_cast<int32_t>(p);
  }
}

}  // namespace cmoe::ops
