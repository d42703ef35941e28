// router.h — MoE routers: softmax top-k, top-p and hash routing, with the balance losses.
//
//   s = softmax(W_g u)   (f32, over all E experts)
//   top-k:  I = topk(s + b, k) (b = aux-loss-free selection bias, selection only),
//           w_i = s_i / max(sum_{j in I} s_j, eps)   (renormalised when k > 1)
//   top-p:  experts in descending s until the cumulative s first exceeds p (that one kept),
//           w_i = s_i (no renormalisation)
//   hash:   I = a fixed table of k distinct experts per token id, w_i = 1/k (no router)
// disable_top1 (evaluation): each token's highest-probability expert is excluded before the
// selection, and top-k weights are renormalised over the rest (the paper's robustness test).
//
// Balance losses (per router, added to the training loss):
//   aux  = coef * E * sum_e f_e * P_e,   f_e = share of routed pairs sent to e (constant),
//                                        P_e = mean over tokens of s[:, e]   (GShard/Switch)
//   z    = z_coef * mean_n logsumexp(W_g u_n)^2                            (ST-MoE)
// With data parallelism (stats_group of R ranks) f_e and P_e are those of the global batch:
// the per-expert counts and probability sums are all-reduced over the group, so the balance
// term equals the single-rank one; each rank's loss carries coef * E / N_local * sum s F
// (its tokens' part, times R), whose gradients averaged over the group are the global ones.
#pragma once

#include <cstdint>
#include <vector>

#include "autograd/ops.h"
#include "moe/variant.h"
#include "parallel/communicator.h"

namespace cmoe {

struct RouterOptions {
  RouterKind kind = RouterKind::kTopK;
  int64_t num_experts = 0;
  int64_t top_k = 2;
  float top_p = 0.4f;
  float aux_coef = 0.0f;
  float z_coef = 0.0f;
  bool disable_top1 = false;
  uint64_t hash_seed = 0;
  parallel::Communicator* stats_group = nullptr;  // sum counts and P_e over it (data parallel)
};

struct RouterOutput {
  ag::Var weights;   // (N, k) f32; 0 where indices is -1
  Tensor indices;    // (N, k) i32 expert ids; -1 = no expert in this slot (top-p padding)
  ag::Var loss;      // () aux + z loss, already scaled by their coefficients; undefined if none
  double aux_value = 0;  // the unscaled balance term E * sum f_e P_e (1.0 = perfectly balanced)
  std::vector<int64_t> counts;  // (E) routed pairs per expert (over stats_group when given)
  // (E) this rank's pairs per expert, when the indices live on a device (the dispatch's problem
  // sizes, from the router's one device-to-host copy); empty for CPU indices.
  std::vector<int64_t> local_counts;
  // How decided the router was over this call's tokens (local, not reduced over stats_group):
  // sums over tokens of max_e s_e and of the entropy -sum_e s_e ln s_e (nats). 0 for hash.
  double top1_prob_sum = 0, entropy_sum = 0;
};

// u: (N, d); w_router: (E, d) (unused for hash); token_ids: (N) i32 (hash only);
// bias: (E) f32 selection bias or undefined. Tensors on one device; the result's on it too.
RouterOutput route(const ag::Var& u, const ag::Var& w_router, const Tensor& token_ids,
                   const RouterOptions& opt, const Tensor& bias);

// The hash router's fixed choice: k distinct experts for a token id.
void hash_experts(int32_t* out, int64_t token_id, int64_t k, int64_t num_experts, uint64_t seed);

}  // namespace cmoe
