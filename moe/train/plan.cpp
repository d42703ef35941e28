// plan.cpp — the layout planner's model (see plan.h; every formula in docs/planner.md).
#include "moe/train/plan.h"

#include <omp.h>

#include <algorithm>
#include <barrier>
#include <chrono>
#include <functional>
#include <cmath>
#include <limits>
#include <set>
#include <thread>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/rng.h"
#include "moe/model.h"
#include "moe/train/optimizer.h"
#include "moe/train/train_data.h"
#include "moe/params.h"
#include "moe/variant.h"
#include "parallel/grad_reducer.h"
#include "parallel/pipeline.h"

namespace cmoe {

using parallel::CommKind;

double plan_wire_bytes(CommKind kind, int n, double bytes) {
  if (n <= 1) return 0;
  const double f = static_cast<double>(n - 1) / n;
  switch (kind) {
    case CommKind::kAllReduce: return 2 * f * bytes;
    case CommKind::kReduceScatter: return f * bytes;
    case CommKind::kAllGather: return (n - 1) * bytes;
    case CommKind::kAllToAll:
    case CommKind::kAllToAllV: return f * bytes;
    case CommKind::kSendRecv:
    case CommKind::kBroadcast: return bytes;
    case CommKind::kBarrier: return 0;
  }
  return 0;
}

double plan_expected_ranks_per_token(int64_t num_experts, int ep, int64_t k) {
  if (ep <= 1) return 1;
  const int64_t per = num_experts / ep;
  // P(a given rank holds none of the k distinct experts) = C(E - per, k) / C(E, k).
  double miss = 1;
  for (int64_t i = 0; i < k; ++i) {
    const double num = static_cast<double>(num_experts - per - i);
    if (num <= 0) {
      miss = 0;
      break;
    }
    miss *= num / static_cast<double>(num_experts - i);
  }
  return ep * (1 - miss);
}

namespace {

constexpr int64_t kF32 = 4, kBF16 = 2, kI32 = 4, kI64 = 8;
constexpr int64_t kLossChunkRows = 256;  // moe/model.cpp kLossChunk

// What one micro-batch of a stage needs to know.
struct StageShape {
  const config::ModelConfig* m = nullptr;
  MoeVariant v;
  int64_t B = 0, T = 0, N = 0, d = 0, H = 0, D = 0, V = 0;
  bool bf16 = false, recompute = false;
  ModelShard shard;
  int ep = 1;
  int64_t k = 0;  // experts per token per set (top-p: the top_k budget)
};

// Bytes a linear keeps for backward: its f32 output, and with bf16 compute the rounded copies
// of its input and weight (ag::linear captures both).
int64_t linear_kept(const StageShape& s, int64_t n, int64_t k, int64_t m, bool compute_dtype = true) {
  int64_t b = n * m * kF32;
  if (s.bf16 && compute_dtype) b += (n * k + m * k) * kBF16;
  return b;
}
int64_t grouped_kept(const StageShape& s, int64_t rows, int64_t k, int64_t m, int64_t groups) {
  int64_t b = rows * m * kF32;
  if (s.bf16) b += (rows * k + groups * m * k) * kBF16;
  return b;
}

// A swiglu's (n, F) output plus what the down projection's kept bytes add to it (kept: the
// given linear_kept or grouped_kept). With bf16 compute the output is bf16 and is itself the
// down projection's rounded input (ag::swiglu's io dtype), so that copy is not counted twice.
int64_t swiglu_and_down_kept(const StageShape& s, int64_t n, int64_t F, int64_t down_kept) {
  return s.bf16 ? down_kept : n * F * kF32 + down_kept;
}

// Routing of one sub-layer on one rank: rows sent and received over ep, and (token, expert)
// pairs the local experts compute.
struct Routing {
  int64_t sent = 0, received = 0, pairs = 0;
};

// The single-rank dispatch of `pairs` (token, expert) pairs of `rows` input rows, its output
// (rows, d) included (moe/dispatch.cpp).
int64_t dispatch_kept(const StageShape& s, int64_t rows, int64_t pairs, int64_t local_experts) {
  const int64_t d = s.d, F = s.v.expert_hidden;
  int64_t b = 2 * pairs * kI32;                        // plan: token_of_slot, pair_of_slot
  b += pairs * d * kF32;                               // gather_rows
  b += 2 * grouped_kept(s, pairs, d, F, local_experts);  // W1, W3
  b += swiglu_and_down_kept(s, pairs, F, grouped_kept(s, pairs, F, d, local_experts));  // swiglu, W2
  b += pairs * kF32;                                   // routing weight per pair
  b += rows * d * kF32;                                // scatter_add_rows
  return b;
}

struct SubLayerBytes {
  int64_t total = 0, dispatch = 0;
};

// One routed sub-layer's kept tensors (moe/model.cpp moe_sublayer, router.cpp route,
// expert_parallel.cpp), its input excluded.
SubLayerBytes sublayer_kept(const StageShape& s, const Routing& r) {
  const auto& moe = s.m->moe();
  const int64_t N = s.N, d = s.d, E = s.v.num_experts, K = s.k;
  SubLayerBytes out;
  int64_t& b = out.total;
  if (s.v.learned_router) {
    b += linear_kept(s, N, d, E, false) + N * E * kF32;  // logits (f32 always), softmax
    b += N * K * kF32 + N * kF32 + N * K * kI32;         // weights, renormaliser, indices
    if (moe.aux_loss_coef() > 0) b += 2 * N * E * kF32;  // f_e broadcast, s * f
    if (moe.z_loss_coef() > 0) b += N * kF32;            // logsumexp
  } else {
    b += N * K * kF32 + N * K * kI32;  // hash: constant weights, indices
  }
  if (s.ep > 1) {
    const int64_t S = r.sent, R = r.received;
    int64_t x = S * kI32;                      // sent token index
    x += S * d * kF32 + R * d * kF32;          // rows gathered, rows received
    x += 3 * S * K * kF32 + R * K * kF32;      // weights gathered, mask, masked, received
    x += dispatch_kept(s, R, r.pairs, E / s.ep);
    x += S * d * kF32 + S * kF32;              // rows returned, their unit weights
    x += N * d * kF32;                         // combined
    out.dispatch = x;
  } else {
    out.dispatch = dispatch_kept(s, N, r.pairs, E);
  }
  b += out.dispatch;
  if (s.v.num_shared > 0) {
    const int64_t Sh = s.v.shared_hidden;
    for (int i = 0; i < s.v.num_shared; ++i)
      b += 2 * linear_kept(s, N, d, Sh) + swiglu_and_down_kept(s, N, Sh, linear_kept(s, N, Sh, d));
    if (s.v.num_shared == 2) b += 2 * N * d * kF32;  // sum, halved
    b += linear_kept(s, N, d, 2, false) + 2 * N * 2 * kF32;  // gate logits, + bias, softmax
    b += 2 * N * kI32 + 2 * N * kF32;                         // split: indices, two columns
    b += 3 * N * d * kF32;                                    // two scale_rows, their sum
  }
  return out;
}

// Bytes one micro-batch of the stage keeps until its backward (the stage input excluded), per
// unit of the backward walk in forward order: the embedding (first stage), each layer, the
// final norm and loss (last stage).
struct StageActivations {
  std::vector<int64_t> units;
  int64_t total = 0, dispatch = 0;
};

StageActivations stage_activations(const StageShape& s, const Routing& r) {
  const int64_t N = s.N, d = s.d, D = s.D;
  StageActivations out;
  // The batch's ids (the embedding, the hash router and the loss keep them) and the embedding.
  out.units.push_back(N * kI32 + (s.shard.first ? N * d * kF32 : 0));
  const int64_t norm = N * d * kF32 + N * kF32;  // rmsnorm output and rstd
  for (int l = s.shard.layer_begin; l < s.shard.layer_end; ++l) {
    int64_t b = 0;
    if (s.recompute) {
      b += 2 * N * d * kF32;  // the recomputed block's output, the residual sum
    } else {
      b += norm;
      b += 3 * linear_kept(s, N, d, d) + 2 * N * d * kF32;  // q, k, v; rope of q and k
      b += N * d * kF32 + N * s.H * kF32;                   // attention output, log-sum-exp
      b += linear_kept(s, N, d, d) + N * d * kF32;          // W_o, residual sum
    }
    b += norm;  // post-attention norm
    if (!s.v.is_moe_layer(l)) {
      b += 2 * linear_kept(s, N, d, D) + swiglu_and_down_kept(s, N, D, linear_kept(s, N, D, d)) + N * d * kF32;
    } else {
      for (const ExpertSet& set : s.v.sets) {
        if (set.own_norm) b += norm;
        const SubLayerBytes sl = sublayer_kept(s, r);
        b += sl.total + N * d * kF32;  // + the residual sum
        out.dispatch += sl.dispatch;
      }
    }
    out.units.push_back(b);
  }
  out.units.push_back(s.shard.last ? norm + N * kF32 + N * kI32 : 0);  // final norm; loss log-sum-exp; targets
  for (int64_t u : out.units) out.total += u;
  return out;
}

// The largest temporary beyond what is kept while backward runs through each unit (as
// StageActivations::units): the loss's logit chunk, its input gradient and, in bf16, the
// rounded head; a layer's attention gradients (a recomputed block's activations first), an
// expert sub-layer's gradients of its dispatched rows; the gradient flowing between units.
std::vector<int64_t> stage_transients(const StageShape& s, const Routing& r, size_t units) {
  const int64_t N = s.N, d = s.d;
  std::vector<int64_t> t(units, 0);
  t[0] = N * d * kF32;
  for (int l = s.shard.layer_begin; l < s.shard.layer_end; ++l) {
    int64_t x = 5 * N * d * kF32;  // dq, dk, dv, and the gradients into and out of the block
    if (s.recompute) {
      StageShape one = s;
      one.recompute = false;
      x += 3 * linear_kept(one, N, d, d) + 5 * N * d * kF32 + N * s.H * kF32;
    }
    if (s.v.is_moe_layer(l)) {
      // The swiglu's two input gradients (bf16 with bf16 compute) while its (pairs, F) output
      // is already freed.
      const int64_t F = s.v.expert_hidden, rows = s.ep > 1 ? r.received : 0;
      x = std::max(x, 2 * r.pairs * F * (s.bf16 ? kBF16 : kF32) + rows * d * kF32 + 2 * N * d * kF32);
    }
    t[static_cast<size_t>(1 + l - s.shard.layer_begin)] = x;
  }
  if (s.shard.last) {
    const int64_t cn = std::min(kLossChunkRows, N);
    int64_t x = cn * s.V * kF32 + 2 * N * d * kF32;
    if (s.bf16) x += (s.V * d + cn * d + cn * s.V) * kBF16;
    t[units - 1] = x;
  }
  return t;
}

void add_comm(std::vector<PlanComm>& out, const char* group, int n, CommKind kind, const std::string& what, int64_t calls,
              int64_t bytes, int64_t bytes_min, int64_t bytes_max, bool in_micro, bool backward) {
  if (calls == 0) return;
  PlanComm c;
  c.group = group;
  c.group_size = n;
  c.kind = kind;
  c.what = what;
  c.calls = calls;
  c.bytes = bytes;
  c.bytes_min = bytes_min;
  c.bytes_max = bytes_max;
  c.in_micro_batch = in_micro;
  c.backward = backward;
  out.push_back(std::move(c));
}
void add_exact(std::vector<PlanComm>& out, const char* group, int n, CommKind kind, const char* what, int64_t calls,
               int64_t bytes, bool in_micro = false, bool backward = false) {
  add_comm(out, group, n, kind, what, calls, bytes, bytes, bytes, in_micro, backward);
}

// Activated matmul parameters of layers [begin, end) and, on the last stage, the head; the
// split of Model::flops_per_token over the stages.
double stage_matmul_params(const config::ModelConfig& m, const MoeVariant& v, int begin, int end, bool last) {
  const double d = m.d_model(), D = m.ffn_hidden();
  double p = last ? double(m.vocab_size()) * d : 0;
  for (int l = begin; l < end; ++l) {
    p += 4 * d * d;
    if (!v.is_moe_layer(l)) {
      p += 3 * d * D;
      continue;
    }
    for (size_t i = 0; i < v.sets.size(); ++i) {
      if (v.learned_router) p += d * double(v.num_experts);
      p += double(v.top_k) * 3 * d * double(v.expert_hidden);
      if (v.num_shared > 0) p += v.num_shared * 3 * d * double(v.shared_hidden) + 2 * d + 2;
    }
  }
  return p;
}

}  // namespace

parallel::CommCounters RankPlan::counters() const {
  parallel::CommCounters c;
  for (const PlanComm& p : comm) c.calls[size_t(p.kind)] += p.calls, c.bytes[size_t(p.kind)] += p.bytes;
  return c;
}
parallel::CommCounters RankPlan::counters_min() const {
  parallel::CommCounters c;
  for (const PlanComm& p : comm) c.calls[size_t(p.kind)] += p.calls, c.bytes[size_t(p.kind)] += p.bytes_min;
  return c;
}
parallel::CommCounters RankPlan::counters_max() const {
  parallel::CommCounters c;
  for (const PlanComm& p : comm) c.calls[size_t(p.kind)] += p.calls, c.bytes[size_t(p.kind)] += p.bytes_max;
  return c;
}

absl::StatusOr<RankPlan> plan_rank(const config::RunConfig& cfg, int rank) {
  const auto& m = cfg.model();
  const auto& t = cfg.train();
  const parallel::ParallelLayout layout{cfg.parallel().pp(), cfg.parallel().dp(), cfg.parallel().ep()};
  const int world = layout.pp * layout.dp;
  CMOE_RETURN_IF_ERROR(parallel::validate_layout(layout, world));
  CMOE_RETURN_IF_ERROR(config_validate_layout(cfg, layout));
  CMOE_ASSIGN_OR_RETURN(parallel::RankPlacement place, parallel::place_rank(layout, world, rank));
  CMOE_ASSIGN_OR_RETURN(DType compute, precision_dtype(t.precision()));

  StageShape s;
  s.m = &m;
  s.v = resolve_variant(m);
  s.B = t.micro_batch_size();
  s.T = m.seq_len();
  s.N = s.B * s.T;
  s.d = m.d_model();
  s.H = m.n_heads();
  s.D = m.ffn_hidden();
  s.V = m.vocab_size();
  s.bf16 = compute == DType::kBF16;
  s.recompute = t.recompute();
  s.shard = pipeline_shard(m.n_layers(), layout.pp, place.pp_rank, layout.ep, place.ep_rank);
  s.ep = layout.ep;
  s.k = s.v.top_k;
  const int64_t M = t.grad_accum(), N = s.N, d = s.d;
  const int dp = layout.dp, ep = layout.ep, pp = layout.pp, edp = dp / ep;
  const bool zero1 = dp > 1 && cfg.parallel().distributed_optimizer();

  RankPlan r;
  r.rank = rank;
  r.stage = place.pp_rank;
  r.dp_rank = place.dp_rank;
  r.ep_rank = place.ep_rank;
  r.layer_begin = s.shard.layer_begin;
  r.layer_end = s.shard.layer_end;

  // --- parameters, gradients, optimizer state: the shard's parameter list ---
  const std::vector<ParamSpec> specs = param_specs(m, s.shard);
  std::vector<int64_t> numel;
  std::vector<bool> sliced;
  for (const ParamSpec& p : specs) {
    numel.push_back(p.shape.numel());
    sliced.push_back(p.sliced);
    r.param_count += p.shape.numel();
  }
  for (const ParamSpec& b : router_bias_specs(m, s.shard)) r.mem.buffers += b.shape.numel() * kF32;
  r.mem.params = r.param_count * kF32;
  r.mem.grads = r.param_count * kF32;
  r.optimizer_elems = r.param_count;
  std::vector<parallel::GradBucket> buckets;
  if (dp > 1) {
    buckets = parallel::grad_bucket_plan(numel, sliced, dp, edp, parallel::GradReducer::kBucketElems, zero1);
    if (zero1) {
      // Elements each dp rank of the stage owns: replicated buckets by dp rank, expert buckets
      // by edp rank (= dp_rank / ep).
      std::vector<int64_t> owned(static_cast<size_t>(dp), 0);
      for (const parallel::GradBucket& b : buckets) {
        for (size_t i = 0; i < b.params.size(); ++i) {
          for (int q = 0; q < dp; ++q)
            if (b.owner[i] == (b.expert ? q / ep : q)) owned[q] += numel[b.params[i]];
        }
      }
      r.optimizer_elems = owned[place.dp_rank];
      r.stage_max_optimizer_elems = *std::max_element(owned.begin(), owned.end());
    }
    for (const parallel::GradBucket& b : buckets) {
      r.mem.grad_buckets += b.elems * kF32;
      if (zero1) r.mem.grad_buckets += b.chunk * kF32;
    }
  }
  if (!zero1) r.stage_max_optimizer_elems = r.optimizer_elems;
  r.mem.optimizer = 2 * r.optimizer_elems * kF32;
  r.optimizer_update_elems = r.optimizer_elems;

  // --- routing of one sub-layer on this rank: expected, smallest, largest ---
  Routing expected, least, most;
  expected.pairs = least.pairs = most.pairs = N * s.k;
  if (!s.v.routed) s.k = 0;
  const auto& moe = m.moe();
  if (s.v.routed && ep == 1 && moe.capacity_factor() > 0) {
    const int64_t cap = static_cast<int64_t>(std::ceil(moe.capacity_factor() * double(N * s.k) / double(s.v.num_experts)));
    expected.pairs = least.pairs = most.pairs = std::min(N * s.k, cap * s.v.num_experts);
    least.pairs = std::min(N * s.k, cap);  // every token on one expert
  }
  if (s.v.routed && ep > 1) {
    const int64_t E = s.v.num_experts, per = E / ep, K = s.k;
    const int64_t spread_min = (K + per - 1) / per, spread_max = std::min<int64_t>(K, ep);
    const bool must_hit_all = K > E - per;  // no token can avoid any rank
    const int64_t rows = std::llround(double(N) * plan_expected_ranks_per_token(E, ep, K));
    expected.sent = expected.received = std::clamp(rows, N * spread_min, N * spread_max);
    least.sent = N * spread_min;
    most.sent = N * spread_max;
    least.received = must_hit_all ? ep * N : 0;
    most.received = ep * N;
    expected.pairs = N * K;
    least.pairs = must_hit_all ? ep * N * (K - (E - per)) : 0;
    most.pairs = ep * N * std::min(K, per);
  }

  // --- activations and the step's peak ---
  const StageActivations act = stage_activations(s, expected), act_worst = stage_activations(s, most);
  r.mem.activations_per_micro = act.total;
  r.mem.activations_per_micro_worst = act_worst.total;
  r.mem.dispatch_per_micro = act.dispatch;
  r.mem.dispatch_per_micro_worst = act_worst.dispatch;
  const int64_t w = std::min<int64_t>(pp - place.pp_rank, M);  // 1F1B: in flight at most
  r.mem.in_flight = w;
  r.mem.activations = r.mem.activations_per_micro * w;
  r.mem.p2p_buffers = s.shard.first ? 0 : w * N * d * kF32;
  const std::vector<int64_t> transients = stage_transients(s, expected, act.units.size());
  const std::vector<int64_t> transients_worst = stage_transients(s, most, act.units.size());
  r.mem.transient = *std::max_element(transients.begin(), transients.end());
  // Gradient bytes of each unit of the backward walk (as StageActivations::units).
  std::vector<int64_t> unit_grads(act.units.size(), 0);
  int64_t largest_param = 0;
  for (const ParamSpec& p : specs) {
    size_t u = 0;
    if (p.name.rfind("layers.", 0) == 0) u = 1 + static_cast<size_t>(std::stoi(p.name.substr(7)) - s.shard.layer_begin);
    else if (p.name.rfind("embed.", 0) != 0) u = act.units.size() - 1;  // final norm, head
    unit_grads[u] += p.shape.numel() * kF32;
    largest_param = std::max(largest_param, p.shape.numel() * kF32);
  }
  auto peak = [&](const StageActivations& a, const std::vector<int64_t>& tr) {
    // The step's first backward on this stage walks the units from the last: while it is in
    // unit u, the activations of the units before u and the gradients of the units after it
    // are alive, and u itself holds its activations and temporaries when its backward starts,
    // its parameters' gradients (and two running gradients) when it ends.
    int64_t first = 0;
    for (size_t u = 0; u < a.units.size(); ++u) {
      int64_t alive = std::max(a.units[u] + tr[u], unit_grads[u] + 2 * N * d * kF32);
      for (size_t v = 0; v < u; ++v) alive += a.units[v];
      for (size_t v = u + 1; v < a.units.size(); ++v) alive += unit_grads[v];
      first = std::max(first, alive);
    }
    first += (w - 1) * a.total;
    // Later backwards: every gradient exists, min(w, M - 1) micro-batches are in flight, and
    // accumulating a gradient briefly holds the old and the new sum of the largest parameter.
    const int64_t tmax = *std::max_element(tr.begin(), tr.end());
    const int64_t later = M > 1 ? r.mem.grads + std::min<int64_t>(w, M - 1) * a.total + tmax + largest_param : 0;
    // The end of the step: the gradients and the reducer's buckets.
    const int64_t reduce = r.mem.grads + r.mem.grad_buckets;
    return r.mem.static_bytes() + r.mem.p2p_buffers + std::max({first, later, reduce});
  };
  r.mem.peak = peak(act, transients);
  r.mem.peak_worst = peak(act_worst, transients_worst);

  // --- FLOPs per micro-batch ---
  const double P = stage_matmul_params(m, s.v, s.shard.layer_begin, s.shard.layer_end, s.shard.last);
  const int layers = s.shard.layer_end - s.shard.layer_begin;
  r.fwd_flops = double(N) * (2 * P + 2.0 * layers * s.T * d);
  r.bwd_flops = 2 * r.fwd_flops;
  if (s.recompute) r.recompute_flops = double(N) * layers * (8.0 * d * d + 2.0 * s.T * d);
  // The LM head's cross-entropy keeps only each row's log-sum-exp and recomputes the logits in
  // backward (both backends), one more (N, d) x (d, V) product.
  if (s.shard.last) r.recompute_flops += 2.0 * double(N) * d * double(m.vocab_size());
  if (s.v.routed) {
    for (int l = s.shard.layer_begin; l < s.shard.layer_end; ++l)
      if (s.v.is_moe_layer(l))
        r.expert_fwd_flops += double(s.v.sets.size()) * 2.0 * double(N) * double(s.v.top_k) * 3 * d * double(s.v.expert_hidden);
  }

  // --- the step's collectives, in the order they happen ---
  int moe_sublayers = 0;
  for (int l = s.shard.layer_begin; l < s.shard.layer_end; ++l)
    if (s.v.is_moe_layer(l)) moe_sublayers += static_cast<int>(s.v.sets.size());
  std::vector<PlanComm>& c = r.comm;
  if (dp > 1 && s.v.learned_router && moe_sublayers > 0) {
    const int64_t E = s.v.num_experts, calls = M * moe_sublayers;
    add_exact(c, "dp", dp, CommKind::kAllReduce, "router statistics", 2 * calls, calls * ((E + 2) * kI64 + E * kF32), true);
  }
  if (ep > 1 && moe_sublayers > 0) {
    const int64_t K = s.k;
    add_exact(c, "ep", ep, CommKind::kAllToAll, "token counts", M * moe_sublayers, M * moe_sublayers * ep * kI64, true);
    // Per expert set (Cartesian: A and B of every MoE layer), forward: expert ids, rows and
    // weights to the owners, rows back; backward: rows, weights (learned routers), rows back.
    const int64_t calls = M * (moe_sublayers / static_cast<int>(s.v.sets.size()));
    auto rows = [&](const Routing& g, bool bwd) {
      int64_t b = bwd ? g.received * d + g.sent * d : g.sent * K + g.sent * d + g.sent * K + g.received * d;
      if (bwd && s.v.learned_router) b += g.received * K;
      return calls * b * kF32;  // i32 ids are as wide as f32
    };
    for (const ExpertSet& set : s.v.sets) {
      const std::string name = set.name == "moe" ? "" : absl::StrCat(" ", set.name == "moeA" ? "A" : "B");
      add_comm(c, "ep", ep, CommKind::kAllToAllV, absl::StrCat("token rows", name, " (forward)"), calls * 4, rows(expected, false),
               rows(least, false), rows(most, false), true, false);
      add_comm(c, "ep", ep, CommKind::kAllToAllV, absl::StrCat("token rows", name, " (backward)"), calls * (s.v.learned_router ? 3 : 2),
               rows(expected, true), rows(least, true), rows(most, true), true, true);
    }
  }
  if (dp > 1 && s.shard.last) add_exact(c, "dp", dp, CommKind::kAllReduce, "token count", M, M * kI64, true);
  if (pp > 1) {
    const parallel::PipelineSchedule sched = parallel::pipeline_schedule(pp, place.pp_rank, M);
    int64_t calls = 0, sends = 0;
    for (const parallel::PipeAction& a : sched.actions) {
      if (a.kind != parallel::PipeAction::kComm) continue;
      ++calls;
      for (const parallel::PipeTransfer& x : a.transfers)
        sends += x.kind == parallel::PipeTransfer::kSendActivation || x.kind == parallel::PipeTransfer::kSendGradient;
    }
    add_exact(c, "pp", pp, CommKind::kSendRecv, "activations and their gradients", calls, sends * N * d * kF32, true);
  }
  if (dp > 1) {
    for (const bool expert : {false, true}) {
      const int n = expert ? edp : dp;
      if (n == 1) continue;
      int64_t count = 0, elems = 0, chunk = 0;
      for (const parallel::GradBucket& b : buckets) {
        if (b.expert != expert) continue;
        ++count;
        elems += b.elems;
        chunk += b.chunk;
      }
      const char* g = expert ? "edp" : "dp";
      if (zero1) {
        add_exact(c, g, n, CommKind::kReduceScatter, "gradient buckets", count, elems * kF32);
        add_exact(c, g, n, CommKind::kAllGather, "updated parameters", count, chunk * kF32);
      } else {
        add_exact(c, g, n, CommKind::kAllReduce, "gradient buckets", count, elems * kF32);
      }
    }
  }
  if (world > 1) add_exact(c, "world", world, CommKind::kAllReduce, "loss, norm, stop flag", 1, 4 * kF32);
  return r;
}

// ---------------------------------------------------------------------------------------------
// Time.

namespace {

// The slowest link a group's traffic takes: inside one node, or across nodes.
struct Link {
  bool inter = false;
  int local = 1;  // members on this rank's node
};

Link group_link(const std::vector<int>& members, int me, int per_node) {
  Link l;
  l.local = 0;
  for (int r : members) {
    if (r / per_node == me / per_node) ++l.local;
    else l.inter = true;
  }
  return l;
}

struct CommTimer {
  const Hardware& hw;
  // Seconds of one PlanComm entry (its expected bytes) on a link.
  double seconds(const PlanComm& c, const Link& link) const {
    const auto& s = hw.spec;
    const int n = c.group_size;
    if (n <= 1) return 0;
    const double latency = (link.inter ? s.inter_node_latency_us() : s.intra_node_latency_us()) * 1e-6;
    // Collectives take about log2(n) dependent steps; a batch of sends and receives one.
    const double steps = c.kind == CommKind::kSendRecv ? 1.0 : std::max(1.0, std::ceil(std::log2(double(n))));
    double t = double(c.calls) * latency * steps;
    const double wire = plan_wire_bytes(c.kind, n, double(c.bytes));
    const bool reduction = c.kind == CommKind::kAllReduce || c.kind == CommKind::kReduceScatter;
    const double intra = (reduction && s.intra_node_reduce_gbs() > 0 ? s.intra_node_reduce_gbs() : s.intra_node_gbs()) * 1e9;
    const double inter = s.inter_node_gbs() * 1e9;
    if (!link.inter) return t + wire / intra;
    if (c.kind == CommKind::kAllToAll || c.kind == CommKind::kAllToAllV) {
      // Traffic to the members on this node stays on it; the rest crosses the network.
      const double off = double(n - link.local) / double(n - 1);
      return t + std::max(wire * (1 - off) / intra, wire * off / inter);
    }
    return t + wire / inter;  // rings across nodes run at the network's speed
  }
};


// The 1F1B schedule of a pipeline whose ranks share one CPU node's cores, simulated: every rank
// runs its stage's actions (parallel::pipeline_schedule) in order; a forward or backward is core
// work (seconds at one core) followed by the expert-parallel traffic inside it (wall time, no
// core); a transfer completes once its peer has posted the matching one. Ranks with work share
// the cores evenly, each using at most `threads` of them; the dp replicas of a stage move in
// lockstep. Returns the pipeline's wall time.
struct SimStage {
  double fwd = 0, bwd = 0, ep_f = 0, ep_b = 0;  // core-seconds at one core; wall seconds
};

double simulate_shared_pipeline(const std::vector<SimStage>& st, int64_t M, int dp, int cores, int threads) {
  const int P = static_cast<int>(st.size());
  std::vector<parallel::PipelineSchedule> sched;
  for (int s = 0; s < P; ++s) sched.push_back(parallel::pipeline_schedule(P, s, M));
  std::vector<size_t> pos(P, 0);
  std::vector<double> work(P, -1), delay(P, -1);  // remaining core work / traffic; -1: not started
  std::set<std::tuple<int, int, int, int64_t>> posted;  // (stage, kind, peer, micro)
  auto counterpart = [](int s, const parallel::PipeTransfer& x) {
    using T = parallel::PipeTransfer;
    const int kind = x.kind == T::kSendActivation ? T::kRecvActivation : x.kind == T::kRecvActivation ? T::kSendActivation
                   : x.kind == T::kSendGradient   ? T::kRecvGradient   : T::kSendGradient;
    return std::make_tuple(x.peer, kind, s, x.micro);
  };
  double t = 0;
  for (int guard = 0; guard < 1000000; ++guard) {
    // Complete every transfer whose peers are there, until nothing changes.
    for (bool moved = true; moved;) {
      moved = false;
      for (int s = 0; s < P; ++s) {
        if (pos[s] >= sched[s].actions.size() || sched[s].actions[pos[s]].kind != parallel::PipeAction::kComm) continue;
        const auto& a = sched[s].actions[pos[s]];
        for (const auto& x : a.transfers) posted.insert({s, x.kind, x.peer, x.micro});
        bool all = true;
        for (const auto& x : a.transfers) all = all && posted.count(counterpart(s, x)) > 0;
        if (all) ++pos[s], moved = true;
      }
    }
    std::vector<int> busy, waiting_traffic;
    for (int s = 0; s < P; ++s) {
      if (pos[s] >= sched[s].actions.size() || sched[s].actions[pos[s]].kind == parallel::PipeAction::kComm) continue;
      const bool fwd = sched[s].actions[pos[s]].kind == parallel::PipeAction::kForward;
      if (work[s] < 0) work[s] = fwd ? st[s].fwd : st[s].bwd, delay[s] = fwd ? st[s].ep_f : st[s].ep_b;
      (work[s] > 0 ? busy : waiting_traffic).push_back(s);
    }
    if (busy.empty() && waiting_traffic.empty()) break;  // every stage done (or, never, stuck)
    const double speed = std::min<double>(threads, double(cores) / double(std::max<size_t>(1, busy.size() * dp)));
    double dt = std::numeric_limits<double>::infinity();
    for (int s : busy) dt = std::min(dt, work[s] / speed);
    for (int s : waiting_traffic) dt = std::min(dt, delay[s]);
    t += dt;
    for (int s : busy) work[s] = std::max(0.0, work[s] - dt * speed);
    for (int s : waiting_traffic) delay[s] = std::max(0.0, delay[s] - dt);
    for (int s = 0; s < P; ++s) {
      if (work[s] == 0 && delay[s] <= 1e-15 && pos[s] < sched[s].actions.size() &&
          sched[s].actions[pos[s]].kind != parallel::PipeAction::kComm) {
        ++pos[s];
        work[s] = delay[s] = -1;
      }
    }
  }
  return t;
}
}  // namespace

absl::StatusOr<LayoutPlan> plan_layout(const config::RunConfig& cfg, const Hardware& hw, int gpus_per_node, double mfu,
                                       double expert_imbalance) {
  const auto& t = cfg.train();
  LayoutPlan L;
  L.layout = {cfg.parallel().pp(), cfg.parallel().dp(), cfg.parallel().ep()};
  const int world = L.layout.pp * L.layout.dp;
  L.zero1 = L.layout.dp > 1 && cfg.parallel().distributed_optimizer();
  L.micro_batch = t.micro_batch_size();
  L.grad_accum = t.grad_accum();
  L.global_batch = L.micro_batch * L.layout.dp * L.grad_accum;
  L.tokens_per_step = L.global_batch * cfg.model().seq_len();
  L.gpus_per_node = gpus_per_node > 0 ? gpus_per_node : (hw.shared_node() ? world : hw.spec.devices_per_node());
  CMOE_ASSIGN_OR_RETURN(DType compute, precision_dtype(t.precision()));
  const double eff = mfu > 0 ? mfu : hw.spec.mfu();
  L.expert_imbalance = L.layout.ep > 1 ? std::max(1.0, expert_imbalance) : 1.0;
  const int per_node = L.gpus_per_node;
  const int ranks_on_node = std::min(world, per_node);
  // Compute and memory bandwidth of one rank: a device's, or its share of a CPU node's (a rank
  // alone on its threads runs at most at cores / ranks of the node).
  const double node_rate = hw.peak_flops(compute) * eff;
  const double rank_rate = hw.shared_node() ? node_rate / std::min(ranks_on_node, hw.spec.cores_per_node()) : node_rate;
  // The optimizer's streams, at the rate measured with AdamW where the hardware gives one.
  const double opt_bw = (hw.spec.optimizer_gbs() > 0 ? hw.spec.optimizer_gbs() * 1e9 : hw.memory_bytes_per_s()) /
                        (hw.shared_node() ? ranks_on_node : 1);
  // The LM head's fused cross-entropy at its own efficiency (an explicit --mfu sets both): of
  // the last stage's work per micro-batch, 2 N d V forward, 4 N d V backward, 2 N d V recompute.
  const double head_eff = mfu > 0 || hw.spec.head_mfu() <= 0 ? eff : hw.spec.head_mfu();
  const double head_fwd = 2.0 * double(L.micro_batch) * cfg.model().seq_len() * cfg.model().d_model() *
                          double(cfg.model().vocab_size());
  // Seconds for a stage's forward (backward: with its recompute) at `rate` FLOP/s for the model.
  auto fwd_seconds = [&](const RankPlan& rp, bool last, double rate) {
    const double h = last ? head_fwd : 0;
    return (rp.fwd_flops - h) / rate + h / (rate * head_eff / eff);
  };
  auto bwd_seconds = [&](const RankPlan& rp, bool last, double rate) {
    const double h = last ? 3 * head_fwd : 0;
    return (rp.bwd_flops + rp.recompute_flops - h) / rate + h / (rate * head_eff / eff);
  };
  L.capacity_bytes = hw.usable_memory_bytes() / (hw.shared_node() ? ranks_on_node : 1);
  const CommTimer timer{hw};
  const int64_t M = L.grad_accum;

  // Per stage: dp rank 0's plan (all ranks of a stage run the same program); memory of the rank
  // that keeps the most optimizer state.
  struct StageTime {
    double fwd = 0, bwd = 0, ep_f = 0, ep_b = 0, p2p = 0, reduce = 0, reduce_last = 0, gather = 0, opt = 0;
    double imb_f = 0, imb_b = 0;  // the busiest ep rank's extra expert work (forward, backward)
  };
  // The routed-expert FLOPs the busiest rank of an ep group computes beyond its share.
  auto extra_expert_flops = [&](const RankPlan& rp) { return (L.expert_imbalance - 1) * rp.expert_fwd_flops; };
  std::vector<StageTime> st(L.layout.pp);
  double world_allreduce = 0;
  for (int s = 0; s < L.layout.pp; ++s) {
    const int rank0 = s * L.layout.dp;
    CMOE_ASSIGN_OR_RETURN(RankPlan rp, plan_rank(cfg, rank0));
    if (rp.stage_max_optimizer_elems > rp.optimizer_elems) {  // ZeRO-1: the rank that owns most
      const int64_t more = 2 * (rp.stage_max_optimizer_elems - rp.optimizer_elems) * 4;
      rp.mem.optimizer += more;
      rp.mem.peak += more;
      rp.mem.peak_worst += more;
      rp.optimizer_update_elems = rp.optimizer_elems = rp.stage_max_optimizer_elems;
    }
    CMOE_ASSIGN_OR_RETURN(parallel::RankPlacement place, parallel::place_rank(L.layout, world, rank0));
    StageTime& x = st[s];
    const bool last = s == L.layout.pp - 1;
    x.fwd = fwd_seconds(rp, last, rank_rate);
    x.bwd = bwd_seconds(rp, last, rank_rate);
    x.imb_f = extra_expert_flops(rp) / rank_rate;
    x.imb_b = 2 * x.imb_f;
    auto members_of = [&place](const std::string& group) -> const std::vector<int>& {
      if (group == "dp") return place.dp_group;
      if (group == "edp") return place.edp_group;
      if (group == "ep") return place.ep_group;
      return place.pp_group;
    };
    for (const PlanComm& c : rp.comm) {
      Link link;
      if (c.group == "world") {
        link.inter = world > per_node;
        link.local = ranks_on_node;
      } else if (c.group == "pp") {
        // Neighbouring stages: the activation crosses the network when any boundary does.
        link.inter = false;
        for (int q = 0; q + 1 < L.layout.pp; ++q)
          link.inter = link.inter || (q * L.layout.dp) / per_node != ((q + 1) * L.layout.dp) / per_node;
      } else {
        link = group_link(members_of(c.group), rank0, per_node);
      }
      const double sec = timer.seconds(c, link) / double(c.in_micro_batch ? M : 1);  // per micro-batch
      if (c.group == "world") world_allreduce = std::max(world_allreduce, sec);
      else if (c.group == "pp") x.p2p += sec;
      else if (c.in_micro_batch) (c.backward ? x.ep_b : x.ep_f) += sec;
      else if (c.kind == CommKind::kAllGather) x.gather += sec;
      else x.reduce += sec, x.reduce_last = std::max(x.reduce_last, sec / std::max<int64_t>(1, c.calls));
    }
    // Memory-bound optimizer work: AdamW reads p, g, m, v and writes p, m, v (28 B per updated
    // element); the norm reads every gradient (4 B); the reducer copies gradients into buckets
    // and the averages out (16 B).
    x.opt = (double(rp.optimizer_update_elems) * 28 + double(rp.param_count) * (4 + (L.layout.dp > 1 ? 16 : 0))) / opt_bw;
    L.peak_bytes = std::max(L.peak_bytes, rp.mem.peak);
    L.peak_bytes_worst = std::max(L.peak_bytes_worst, rp.mem.peak_worst);
    L.flops_per_step += (rp.fwd_flops + rp.bwd_flops) * double(M) * L.layout.dp;
    L.stages.push_back(std::move(rp));
  }
  L.fits = double(L.peak_bytes) <= L.capacity_bytes;

  // 1F1B: the micro-batches pass every stage once (fill and drain) and the slowest stage M - 1
  // more times; a stage's slot is its forward and backward with the expert-parallel traffic
  // inside them, plus its pipeline transfers.
  double sum_slot = 0, max_slot = 0, max_compute = 0, max_imb = 0, max_ep = 0, max_p2p = 0;
  for (const StageTime& x : st) {
    const double slot = x.fwd + x.bwd + x.imb_f + x.imb_b + x.ep_f + x.ep_b + x.p2p;
    sum_slot += slot;
    if (slot > max_slot)
      max_slot = slot, max_compute = x.fwd + x.bwd, max_imb = x.imb_f + x.imb_b, max_ep = x.ep_f + x.ep_b, max_p2p = x.p2p;
  }
  StepTime& T = L.time;
  T.compute = double(M) * max_compute;
  T.imbalance = double(M) * max_imb;
  T.ep_comm = double(M) * max_ep;
  T.pp_comm = double(M) * max_p2p;
  T.bubble = sum_slot - max_slot;
  // One CPU node: its ranks share the cores, each with cores / ranks OpenMP threads (at least
  // one); the pipeline's wall time comes from simulating the schedule on them.
  if (hw.shared_node() && world <= per_node) {
    const int cores = hw.spec.cores_per_node(), threads = std::max(1, cores / ranks_on_node);
    const double core_rate = node_rate / cores;
    std::vector<SimStage> sim, sim_imb;
    double core_work = 0;
    for (int s = 0; s < L.layout.pp; ++s) {
      const RankPlan& rp = L.stages[s];
      const bool last = s == L.layout.pp - 1;
      sim.push_back({fwd_seconds(rp, last, core_rate), bwd_seconds(rp, last, core_rate), st[s].ep_f, st[s].ep_b});
      const double extra = extra_expert_flops(rp) / core_rate;
      sim_imb.push_back({sim.back().fwd + extra, sim.back().bwd + 2 * extra, st[s].ep_f, st[s].ep_b});
      core_work += (sim.back().fwd + sim.back().bwd) * double(M) * L.layout.dp;
    }
    // With imbalance the dp replicas of a stage (an ep group among them) keep the pace of the
    // busiest: the schedule runs as if every replica did its work.
    const double pipeline = simulate_shared_pipeline(sim, M, L.layout.dp, cores, threads);
    const double pipeline_imb = L.expert_imbalance > 1 ? simulate_shared_pipeline(sim_imb, M, L.layout.dp, cores, threads) : pipeline;
    T.compute = core_work / std::min(cores, ranks_on_node * threads);
    T.bubble = std::max(0.0, pipeline - T.compute - T.ep_comm);
    T.imbalance = std::max(0.0, pipeline_imb - pipeline);
  } else if (hw.shared_node()) {
    // Several CPU nodes: the step takes at least all of a node's ranks' FLOPs at its rate.
    double node_flops = 0;
    for (int s = 0; s < L.layout.pp; ++s) {
      const RankPlan& rp = L.stages[s];
      for (int q = 0; q < L.layout.dp; ++q)
        if ((s * L.layout.dp + q) / per_node == 0) node_flops += (rp.fwd_flops + rp.bwd_flops + rp.recompute_flops) * double(M);
    }
    const double node_bound = node_flops / node_rate;
    if (node_bound > T.compute + T.bubble) T.compute = node_bound, T.bubble = 0;
  }
  // After the pipeline: the gradient reduction (hidden behind the last backward where the
  // hardware overlaps it, except its last bucket), the norm and world all-reduce, AdamW and the
  // ZeRO-1 all-gather; the slowest stage sets the pace.
  double post_reduce = 0;
  const StageTime* slowest_update = &st[0];
  for (const StageTime& x : st) {
    double exposed = x.reduce;
    if (hw.spec.overlap_grad_reduce()) exposed = std::max(x.reduce_last, x.reduce - x.bwd);
    post_reduce = std::max(post_reduce, exposed);
    if (x.opt + x.gather > slowest_update->opt + slowest_update->gather) slowest_update = &x;
  }
  T.dp_comm = post_reduce + slowest_update->gather;
  T.optimizer = slowest_update->opt;
  T.other = world_allreduce;
  T.total = T.compute + T.imbalance + T.bubble + T.ep_comm + T.pp_comm + T.dp_comm + T.optimizer + T.other;
  L.tokens_per_s = double(L.tokens_per_step) / T.total;
  // MFU as docs/metrics.md defines it: model FLOPs per second over the job's peak.
  const double job_peak = hw.shared_node() ? hw.peak_flops(compute) * std::ceil(double(world) / per_node)
                                           : hw.peak_flops(compute) * world;
  L.mfu = L.flops_per_step / T.total / job_peak;
  return L;
}

absl::StatusOr<std::vector<LayoutPlan>> plan_layouts(const config::RunConfig& cfg, const Hardware& hw, const PlanOptions& opt) {
  if (opt.gpus < 1) return absl::InvalidArgumentError(absl::StrCat("--gpus ", opt.gpus, ": need at least 1"));
  const auto& t = cfg.train();
  const std::vector<int64_t> mbs = opt.micro_batches.empty() ? std::vector<int64_t>{t.micro_batch_size()} : opt.micro_batches;
  const std::vector<int64_t> gas = opt.grad_accums.empty() ? std::vector<int64_t>{t.grad_accum()} : opt.grad_accums;
  std::vector<LayoutPlan> out;
  std::vector<std::string> skipped;
  for (int pp = 1; pp <= opt.gpus; ++pp) {
    if (opt.gpus % pp != 0) continue;
    const int dp = opt.gpus / pp;
    for (int ep = 1; ep <= dp; ++ep) {
      if (dp % ep != 0) continue;
      if ((opt.only_pp > 0 && pp != opt.only_pp) || (opt.only_dp > 0 && dp != opt.only_dp) ||
          (opt.only_ep > 0 && ep != opt.only_ep))
        continue;
      config::RunConfig c = cfg;
      c.mutable_parallel()->set_pp(pp);
      c.mutable_parallel()->set_dp(dp);
      c.mutable_parallel()->set_ep(ep);
      if (!config_validate_layout(c, {pp, dp, ep}).ok()) continue;
      for (const int64_t mb : mbs) {
        std::vector<int64_t> accums = gas;
        if (opt.global_batch > 0) {
          if (opt.global_batch % (mb * dp) != 0) continue;
          accums = {opt.global_batch / (mb * dp)};
        }
        for (const int64_t ga : accums) {
          for (const bool z : opt.zero1) {
            if (z && dp == 1) continue;  // ZeRO-1 shards over dp: nothing to shard
            c.mutable_train()->set_micro_batch_size(static_cast<int32_t>(mb));
            c.mutable_train()->set_grad_accum(static_cast<int32_t>(ga));
            c.mutable_parallel()->set_distributed_optimizer(z);
            const auto cal = opt.mfu > 0 ? opt.calibration.end() : opt.calibration.find(mb);
            Hardware hw_mb = hw;
            if (cal != opt.calibration.end() && cal->second.why.empty()) {
              hw_mb.spec.set_mfu(cal->second.mfu);
              hw_mb.spec.set_head_mfu(cal->second.head_mfu);
              hw_mb.spec.set_optimizer_gbs(cal->second.optimizer_gbs);
            }
            double imbalance = opt.expert_imbalance > 0 ? opt.expert_imbalance : 1;
            if (opt.expert_imbalance <= 0 && cal != opt.calibration.end()) {
              const auto f = cal->second.ep_imbalance.find(ep);
              if (f != cal->second.ep_imbalance.end()) imbalance = f->second;
            }
            CMOE_ASSIGN_OR_RETURN(LayoutPlan p, plan_layout(c, hw_mb, opt.gpus_per_node, opt.mfu, imbalance));
            out.push_back(std::move(p));
          }
        }
      }
    }
  }
  if (out.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "no layout of ", opt.gpus, " ranks fits the config (pp * dp = ", opt.gpus,
        ", ep dividing dp and the experts per set, pp <= n_layers", opt.global_batch > 0 ? ", micro-batch * dp dividing --global-batch" : "",
        ")"));
  }
  std::stable_sort(out.begin(), out.end(), [](const LayoutPlan& a, const LayoutPlan& b) {
    if (a.fits != b.fits) return a.fits;
    if (a.fits) return a.tokens_per_s > b.tokens_per_s;
    return a.peak_bytes < b.peak_bytes;
  });
  return out;
}

CpuCalibration calibrate_cpu_mfu(const config::RunConfig& cfg, const Hardware& hw, int threads, int ranks) {
  CpuCalibration c;
  config::RunConfig one = cfg;
  one.mutable_parallel()->set_pp(1);
  one.mutable_parallel()->set_dp(1);
  one.mutable_parallel()->set_ep(1);
  one.mutable_parallel()->set_distributed_optimizer(false);
  one.mutable_train()->set_grad_accum(1);
  auto rp = plan_rank(one, 0);
  auto compute = precision_dtype(one.train().precision());
  if (!rp.ok() || !compute.ok()) {
    c.why = std::string(!rp.ok() ? rp.status().message() : compute.status().message());
    return c;
  }
  // The peak of `threads` of the node's cores (the plan gives a rank threads / cores of it).
  const int cores = std::max(1, hw.spec.cores_per_node());
  threads = std::clamp(threads, 1, cores);
  const double flops = rp->fwd_flops + rp->bwd_flops + rp->recompute_flops,
               peak = hw.peak_flops(*compute) * threads / cores;
  if (flops / (0.5 * peak) > 20 || double(rp->mem.peak) > 0.5 * hw.usable_memory_bytes()) {
    c.why = absl::StrFormat("the config is too large to time here (%.0f GFLOP and %.1f GiB per micro-batch)", flops * 1e-9,
                            double(rp->mem.peak) / double(int64_t{1} << 30));
    return c;
  }
  const auto& m = one.model();
  const int64_t B = one.train().micro_batch_size(), T = m.seq_len();
  // The config's first training micro-batches, one per rank (what the layouts' first step
  // reads); random tokens when the data cannot be read.
  const int R = std::max(1, ranks);
  std::vector<Batch> batches;
  if (auto loader = open_loader(one, true, int64_t{R} * B, 0); loader.ok()) {
    for (int i = 0; i < R; ++i) {
      auto mb = (*loader)->next();
      if (!mb.ok()) break;
      batches.push_back({mb->tokens, mb->targets});
    }
  }
  if (static_cast<int>(batches.size()) == R) {
    c.routing_source = "the config's first training micro-batches";
  } else {
    c.routing_source = "random tokens (the config's training data could not be read)";
    batches.clear();
    for (int b = 0; b < R; ++b) {
      std::vector<int32_t> ids(static_cast<size_t>(B * T)), targets(ids.size());
      for (size_t i = 0; i < ids.size(); ++i) {
        const uint64_t at = static_cast<uint64_t>(b) * ids.size() + i;
        ids[i] = static_cast<int32_t>(rng_u32(one.train().seed(), 1, at) % m.vocab_size());
        targets[i] = static_cast<int32_t>(rng_u32(one.train().seed(), 2, at) % m.vocab_size());
      }
      batches.push_back({Tensor::from_ints({B, T}, ids), Tensor::from_ints({B, T}, targets)});
    }
  }
  const Tensor id_t = batches[0].ids, target_t = batches[0].targets;
  Model model(m, one.train().seed());
  ForwardOptions fo;
  fo.compute_dtype = *compute;
  fo.recompute_attention = one.train().recompute();
  const int saved_threads = omp_get_max_threads();
  omp_set_num_threads(threads);
  auto best_of = [](int reps, const std::function<void()>& fn) {  // the first run is a warm-up
    double best = std::numeric_limits<double>::infinity();
    for (int rep = 0; rep <= reps; ++rep) {
      const auto t0 = std::chrono::steady_clock::now();
      fn();
      const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (rep > 0) best = std::min(best, sec);
    }
    return best;
  };
  // As the training step runs it: the backward's seed (1) given to the forward, so the LM head's
  // gradients come with its forward (the CPU computes its logits once; see ag::cross_entropy).
  ForwardOptions train_fo = fo;
  train_fo.loss_grad = 1.0f;
  const double whole = best_of(3, [&] {
    for (Param& p : model.params()) p.var.zero_grad();
    ForwardResult r = model.forward(id_t, target_t, train_fo);
    ag::backward(r.loss);
  });
  // The head alone: the fused cross-entropy of (N, d) rows against the (V, d) head, forward and
  // backward, timed as training runs it; its nominal FLOPs count the logits twice (the backward
  // recomputes them on CUDA): 2 + 4 + 2 = 8 N d V, so the efficiency measured here absorbs the
  // CPU's single pass.
  const int64_t N = B * T, d = m.d_model(), V = m.vocab_size();
  ag::Var h(Tensor::full({N, d}, 0.01f), true), w(Tensor::full({V, d}, 0.02f), true);
  const Tensor flat_targets = target_t.view({N});
  const double head = best_of(3, [&] {
    h.zero_grad();
    w.zero_grad();
    ag::backward(ag::cross_entropy(h, w, flat_targets, 256, *compute, /*expected_grad=*/1.0f));
  });
  const double head_flops = 8.0 * double(N) * double(d) * double(V);
  // AdamW over the gradients the last backward left.
  AdamW opt(&model.params(), {one.train().beta1(), one.train().beta2(), one.train().adam_eps(), one.train().weight_decay()});
  int64_t elems = 0;
  for (const Param& p : model.params()) elems += p.var.value().numel();
  const double adamw = best_of(3, [&] { opt.step(1e-6f); });
  // Routing: the routed pairs per expert of every MoE sub-layer, per micro-batch (the update
  // above moved the weights by 1e-6 of a step: the first step's routing all the same).
  std::vector<std::vector<RouterReport>> routed;
  for (const Batch& b : batches) {
    ForwardResult r = model.forward(b.ids, b.targets, fo);
    routed.push_back(std::move(r.routers));
  }
  omp_set_num_threads(saved_threads);
  const size_t routers = routed[0].size();
  const int64_t E = routers > 0 ? static_cast<int64_t>(routed[0][0].counts.size()) : 0;
  for (int ep = 2; ep <= R && routers > 0; ++ep) {
    if (E % ep != 0) continue;
    double sum = 0;
    const int groups = R / ep;
    for (int g = 0; g < groups; ++g) {
      double busiest = 0, mean = 0;
      for (size_t k = 0; k < routers; ++k) {
        std::vector<double> load(static_cast<size_t>(ep), 0);
        for (int b = g * ep; b < (g + 1) * ep; ++b) {
          const std::vector<int64_t>& n = routed[b][k].counts;
          for (size_t e = 0; e < n.size(); ++e)
            load[parallel::expert_owner(static_cast<int64_t>(n.size()), ep, static_cast<int64_t>(e))] += double(n[e]);
        }
        busiest += *std::max_element(load.begin(), load.end());
        for (double x : load) mean += x / ep;
      }
      sum += mean > 0 ? busiest / mean : 1;
    }
    c.ep_imbalance[ep] = sum / groups;
  }
  c.seconds = whole;
  // The split needs the head to be measurably less than the whole (a model that is nearly all
  // head, or timings disturbed by other work, may not give that): else one figure for both.
  if (head < 0.9 * whole && head_flops < flops) {
    c.head_mfu = std::min(1.0, head_flops / head / peak);
    c.mfu = std::min(1.0, (flops - head_flops) / (whole - head) / peak);
  } else {
    c.mfu = c.head_mfu = std::min(1.0, flops / whole / peak);
  }
  c.optimizer_gbs = 28.0 * double(elems) / adamw * 1e-9 * cores / threads;
  // More ranks than cores: they time-share the cores, which costs more than the share itself
  // (switches, caches). Run `ranks` copies of the forward and backward at once, one thread each,
  // and scale both efficiencies by what the node achieved against one copy alone.
  if (ranks > cores && double(ranks) * double(rp->mem.peak) < 0.5 * hw.usable_memory_bytes()) {
    std::vector<std::unique_ptr<Model>> copies;
    for (int r = 0; r < ranks; ++r) copies.push_back(std::make_unique<Model>(m, one.train().seed()));
    // Rounds that start together; a round lasts until its last copy is done. The median round
    // (one round alone varies by several percent with what the scheduler does).
    constexpr int kRounds = 3;
    std::vector<std::vector<double>> seconds(kRounds, std::vector<double>(static_cast<size_t>(ranks), 0));
    std::barrier sync(ranks);
    std::vector<std::thread> pool;
    for (int r = 0; r < ranks; ++r) {
      pool.emplace_back([&, r] {
        omp_set_num_threads(1);
        Model& mine = *copies[static_cast<size_t>(r)];
        auto once = [&] {
          for (Param& p : mine.params()) p.var.zero_grad();
          ForwardResult res = mine.forward(id_t, target_t, fo);
          ag::backward(res.loss);
        };
        once();  // warm-up
        for (int round = 0; round < kRounds; ++round) {
          sync.arrive_and_wait();
          const auto t0 = std::chrono::steady_clock::now();
          once();
          seconds[round][static_cast<size_t>(r)] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        }
      });
    }
    for (std::thread& t : pool) t.join();
    std::vector<double> rounds;
    for (const std::vector<double>& s : seconds) rounds.push_back(*std::max_element(s.begin(), s.end()));
    std::sort(rounds.begin(), rounds.end());
    const double shared = rounds[kRounds / 2];
    // Alone, a copy takes `whole` on one core's share; sharing perfectly, ranks / cores times that.
    c.sharing = std::min(1.0, whole * double(ranks) / double(cores) / shared);
    c.mfu *= c.sharing;
    c.head_mfu *= c.sharing;
  }
  return c;
}

}  // namespace cmoe
