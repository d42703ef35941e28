// routing.h — the MoE router's and dispatcher's kernels on CPU (f32 statistics): routing weights
// and the router z-loss (differentiable), expert selection (top-k with a selection bias and
// disable-top1, top-p, hash), the per-expert load of a batch, and the counting-sort placement
// of the dispatch. moe/router.cpp and moe/dispatch.cpp call them through the op table
// (autograd/op_table.h), so a CUDA tensor runs the CUDA column's version of each.
//
// Index tensors hold expert ids in [0, E), or -1 for an empty slot (top-p rows keep fewer
// experts than the widest row; disable-top1 may leave fewer than k).
#pragma once

#include <cstdint>
#include <span>

#include "core/tensor.h"

namespace cmoe::ops {

// S_n = max(sum_{j: idx[n,j] >= 0} probs[n, idx[n,j]], eps) with renorm, else 1;
// w[n, j] = probs[n, idx[n, j]] / S_n (0 where idx is -1).
// w: (N, K) f32; denom: (N) f32 = S_n (saved for backward); probs: (N, E) f32; idx: (N, K) i32.
void routing_weights_forward(Tensor& w, Tensor& denom, const Tensor& probs, const Tensor& idx,
                             bool renorm);
// dprobs (N, E), overwritten: dprobs[n, idx[n,j]] = (dw[n,j] - sum_i dw[n,i] w[n,i]) / S_n with
// renorm, dw[n,j] without; 0 elsewhere.
void routing_weights_backward(Tensor& dprobs, const Tensor& dw, const Tensor& w,
                              const Tensor& denom, const Tensor& idx, bool renorm);

// out () = mean_n lse_n^2, lse_n = logsumexp(logits[n, :]);  logits: (N, E) f32; lse: (N) saved.
void z_loss_forward(Tensor& out, Tensor& lse, const Tensor& logits);
// dlogits[n, e] = dout * 2 lse_n softmax(logits[n])_e / N   (overwritten; dout: () f32)
void z_loss_backward(Tensor& dlogits, const Tensor& dout, const Tensor& logits, const Tensor& lse);

// The top-k router's choice: per row the K largest s + b (ties to the lower index), after
// removing the row's argmax of s when disable_top1 (its first maximum); -1 pads a row with
// fewer than K candidates. indices: (N, K) i32; probs: (N, E) f32; bias: (E) f32 or undefined.
void router_topk(Tensor& indices, const Tensor& probs, const Tensor& bias, bool disable_top1);
// The top-p router's choice: per row, experts in descending s (stable: ties by index) from the
// first (second with disable_top1) until the cumulative s first exceeds top_p (that one kept).
// Returns (N, K) i32 on probs' device, K = the widest row (>= 1), -1 padded.
Tensor router_topp(const Tensor& probs, float top_p, bool disable_top1);
// The hash router's fixed table: indices[n, :] = k distinct experts for token ids[n] (below).
// indices: (N, K) i32; ids: (N) i32.
void router_hash(Tensor& indices, const Tensor& ids, int64_t num_experts, uint64_t seed);
// The choice of hash_router for one token id, drawn from Philox stream "router.hash_table":
// choice j takes the r-th expert not yet chosen, r = u32(seed, stream, 64 * id + j) % (E - j).
void hash_expert_choices(int32_t* out, int64_t token_id, int64_t k, int64_t num_experts,
                         uint64_t seed);

// Per-expert load of a batch: counts[e] = #{(n, j): idx[n, j] == e}; psum[e] = sum_n probs[n, e]
// (accumulated in f64, stored f32; 0 when probs is undefined). counts: (E) i64; psum: (E) f32.
void expert_load(Tensor& counts, Tensor& psum, const Tensor& idx, const Tensor& probs);

// Dispatch placement (a stable counting sort): pair p = n * K + j with e = idx[n, j] >= 0 is
// kept when fewer than `capacity` earlier pairs chose e, and goes to slot offsets[e] + (its rank
// among e's kept pairs): token_of_slot[slot] = n, pair_of_slot[slot] = p. offsets: E + 1 kept
// segment starts (host). token_of_slot, pair_of_slot: (offsets[E]) i32; idx: (N, K) i32.
void dispatch_sort(Tensor& token_of_slot, Tensor& pair_of_slot, const Tensor& idx,
                   std::span<const int64_t> offsets, int64_t capacity);

}  // namespace cmoe::ops
