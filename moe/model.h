// model.h — the LLaMA-style MoE decoder and every FFN variant of the paper, one config apart.
//
//   x = embed(ids)
//   per layer l:  h = x + W_o attn(rope(W_q a), rope(W_k a), W_v a),  a = RMSNorm_in(x)
//                 dense:     x = h + SwiGLU(RMSNorm_post(h))
//                 moe:       x = h + M(RMSNorm_post(h))                 (smoe/hash/topp/fine)
//                 cartesian: h1 = h + M_A(RMSNorm_post(h)); x = h1 + M_B(RMSNorm_B(h1))
//   loss = mean_t CE(RMSNorm_f(x) W_head^T, targets) + sum over routers of their balance loss
// MoE layers sit at indices 0, interval, 2*interval, ... (GShard formation). M(u) is a routed
// sub-layer: y = c0 * sum_i w_i FFN_i(u) + c1 * S(u), c = softmax(W_c u + b_c), or y = r
// without a shared expert (docs/model.md). The variant is resolved once (moe/variant.h).
//
// Parameters are leaves named like "layers.3.moeA.experts.w1", allocated from the list
// param_specs (moe/params.h) gives; each is initialised from the Philox stream of its name, so
// a value never depends on the parallel layout.
//
// Parallel training builds a Model per rank from a ModelShard: a pipeline stage holds layers
// [layer_begin, layer_end) (the embedding on the first stage, the final norm and head on the
// last), and with expert parallelism the expert tensors hold only this rank's experts — rows
// [e0, e1) of dim 0, drawn from the same Philox stream at the global offsets, so they equal
// the single-rank model's rows. A ParallelContext supplies the groups the forward pass talks
// to: router statistics and token counts are summed over `dp`, token rows travel over `ep`.
//
// Inference (generation) runs the same layers without a tape over a key/value cache: a prefill
// of the prompt, then one token per sequence at a time. Each layer keeps K (after RoPE) and V of
// the positions processed so far; new tokens get RoPE at their own positions and attend to the
// cached keys and themselves (ops::attention_kv_forward). Routing is per token, so the MoE
// layers need nothing more, except that inference, like evaluation, is dropless (a capacity
// limit would make a token's output depend on the other tokens of the batch).
#pragma once

#include <functional>
#include <string>
#include <unordered_map>
#include <vector>

#include "autograd/ops.h"
#include "autograd/param.h"
#include "moe/dispatch.h"
#include "moe/model_config.pb.h"
#include "moe/params.h"
#include "moe/router.h"
#include "moe/variant.h"
#include "parallel/communicator.h"

namespace cmoe {

// Groups the forward pass uses; null (or size 1) = this rank alone.
struct ParallelContext {
  parallel::Communicator* dp = nullptr;  // router statistics, global token count
  parallel::Communicator* ep = nullptr;  // token all-to-all to the expert owners
};

struct ForwardOptions {
  DType compute_dtype = DType::kF32;  // matmul inputs: f32 or bf16 (f32 accumulation)
  bool disable_top1 = false;          // evaluation: exclude each token's top-1 expert
  // With disable_top1: only in the routers of this expert set ("moe", "moeA", "moeB");
  // "" = in every router.
  std::string disable_top1_set;
  bool recompute_attention = false;   // activation recomputation of each attention block
  // Fire the grad-ready hook (Model::set_grad_ready) during this forward's backward: set on
  // the last micro-batch of a step, whose backward completes each parameter's gradient.
  bool final_micro_batch = true;
  // Ignore model.moe.capacity_factor: every selected (token, expert) pair is computed. Set by
  // evaluation and inference, so their results do not depend on how tokens are batched.
  bool dropless = false;
  // The gradient the caller's backward will seed this forward's loss with (the training step:
  // 1 / micro-batches), or 0 when not known. Given, the LM head's cross-entropy computes its
  // gradients with the forward, from the logits it already has (see ag::cross_entropy).
  float loss_grad = 0.0f;
};

// Inference state of B sequences: per layer the keys (after RoPE) and values of positions
// [0, length). k[l], v[l]: (B, capacity, H, Dh) f32. From Model::kv_cache.
struct KvCache {
  int64_t length = 0;    // positions processed = the position of the next token
  int64_t capacity = 0;  // positions it holds (at most model.seq_len)
  std::vector<Tensor> k, v;
};

struct RouterReport {
  std::string name;              // "layers.0.moeA"
  std::vector<int64_t> counts;   // (E) routed pairs per expert
  int64_t pairs = 0;             // routed (token, choice) pairs before dropping
  int64_t dropped = 0;           // pairs dropped by the capacity limit
  double aux = 0;                // unscaled balance term (1.0 = balanced)
  // How decided the router was, over this rank's tokens (not summed over data parallelism):
  // sums over `tokens` of the top-1 probability max_e s_e and of the routing entropy
  // -sum_e s_e ln s_e (learned routers only: prob_tokens = 0 for hash), and of the routed
  // output's gate weight c_0 (1 without a shared expert).
  int64_t tokens = 0, prob_tokens = 0;
  double top1_prob_sum = 0, entropy_sum = 0, routed_gate_sum = 0;
};

// A Cartesian layer's co-usage on this rank: counts[a * experts_b + b] = (token, a, b) triples
// with a among the token's A choices and b among its B choices (k_A * k_B pairs per token).
// Local to this rank's tokens (not summed over data parallelism, unlike RouterReport::counts).
struct CoUsage {
  std::string layer;           // "layers.0"
  std::string router_a, router_b;  // "layers.0.moeA", "layers.0.moeB"
  int64_t experts_a = 0, experts_b = 0;
  std::vector<int64_t> counts;  // (experts_a * experts_b), row-major
};

// With data parallelism (ParallelContext::dp of size R), each rank's loss is R times its share
// of the global micro-batch's loss, so averaging gradients over dp gives the global gradient:
// CE = R * sum_local ce / global_tokens; ce below is the share sum_local ce / global_tokens
// (summed over dp it is the global mean). With one rank both are the plain mean.
struct ForwardResult {
  ag::Var loss;       // () CE + balance losses (last stage) or balance losses only (undefined if none)
  ag::Var hidden;     // (N, d) the stage's output, for the next pipeline stage (not on the last)
  double ce = 0;      // this rank's share of the mean token cross-entropy (nats)
  int64_t tokens = 0; // tokens with a target on this rank
  int64_t global_tokens = 0;  // ... in the micro-batch over the data-parallel group
  double aux = 0;     // this rank's scaled balance losses (means over its own tokens)
  std::vector<RouterReport> routers;
  std::vector<CoUsage> co_usage;  // one per Cartesian layer of this stage
};

class Model {
 public:
  // init = false leaves the parameters uninitialised (a buffer of the right names and shapes,
  // e.g. to receive another stage's tensors for a checkpoint).
  Model(const config::ModelConfig& cfg, uint64_t seed, const ModelShard& shard = {}, bool init = true);

  // ids, targets: (B, T) i32; targets < 0 are ignored. The whole model (first and last stage).
  ForwardResult forward(const Tensor& ids, const Tensor& targets, const ForwardOptions& opt);
  // One pipeline stage: input = embedding(ids) on the first stage, else x_in (N, d); the loss
  // on the last stage (targets read there only), else the output in ForwardResult::hidden.
  ForwardResult forward_stage(const Tensor& ids, const ag::Var& x_in, const Tensor& targets,
                              const ForwardOptions& opt);

  // Inference on the whole model of one process (no tape; dropless routing). An empty cache for
  // `batch` sequences of up to `capacity` positions (capacity <= model.seq_len).
  KvCache kv_cache(int64_t batch, int64_t capacity) const;
  // ids (B, T) i32 at positions cache.length .. cache.length + T - 1 (the same for every row):
  // appends their keys and values to the cache and returns the next-token logits, (B * T, V) f32
  // for every new position (row b * T + t) with all_positions, else (B, V) for the last one.
  Tensor forward_cached(const Tensor& ids, KvCache& cache, const ForwardOptions& opt, bool all_positions = false);
  // (B * T, V) f32 logits of every position by the training forward's layers (the fused causal
  // attention over the whole sequence, no cache), dropless; the reference for forward_cached.
  Tensor logits(const Tensor& ids, const ForwardOptions& opt);

  void set_parallel(const ParallelContext& ctx) { ctx_ = ctx; }
  // Moves every parameter and router bias to `device` (training on a GPU: the model is built and
  // initialised, or loaded from a checkpoint, on the host first, so its values are the same on
  // every device). forward()/forward_stage() then take host ids and targets and run there;
  // inference (forward_cached, logits) stays on the CPU.
  void to_device(Device device);
  Device device() const { return device_; }
  // fn(i) is called during backward of a forward with final_micro_batch, as soon as
  // params()[i]'s gradient is complete (data-parallel bucketed reduction starts there).
  void set_grad_ready(std::function<void(size_t)> fn) { grad_ready_ = std::move(fn); }
  const ModelShard& shard() const { return shard_; }

  std::vector<Param>& params() { return params_; }
  const config::ModelConfig& config() const { return cfg_; }
  const MoeVariant& variant() const { return variant_; }
  // Aux-loss-free selection biases, one (E) tensor per router ("layers.0.moeA.bias").
  std::vector<Param>& router_biases() { return biases_; }
  // DeepSeek-V3 bias update: b_e += rate * sign(mean load - load_e), per router.
  void update_router_biases(const std::vector<RouterReport>& reports, float rate);
  // Model FLOPs per token for forward+backward (6 * activated matmul params + attention).
  double flops_per_token() const;

 private:
  struct SubLayer {  // one routed MoE sub-layer
    std::string name;
    ag::Var router, gate_w, gate_b;
    ExpertWeights experts;
    std::vector<ExpertWeights> shared;  // 0, 1 (smoe, cartesian) or 2 (fine_grained) FFNs
    int bias_index = -1;
    bool own_norm = false;  // input = RMSNorm_B(residual) (Cartesian B), else the post-attention norm
  };
  struct Layer {
    ag::Var ln_in, ln_post, ln_b, wq, wk, wv, wo;
    ag::Var w1, w3, w2;           // dense FFN
    std::vector<SubLayer> moe;    // one per expert set: 0 (dense layer), 1, or 2 (cartesian A, B)
  };

  // The forward pass's handle on a parameter: the leaf itself, or its grad-ready hook node.
  ag::Var P(const ag::Var& leaf) const;
  Layer hooked(const Layer& L) const;
  // cache: inference, layer `layer` of the cache (keys and values appended at cache->length).
  ag::Var attention_block(Layer L, const ag::Var& x, int64_t B, int64_t T, const ForwardOptions& opt,
                          KvCache* cache = nullptr, size_t layer = 0);
  // The shard's layers on x (N, d); res and aux collect the routers' reports and losses.
  ag::Var layers_forward(ag::Var x, const Tensor& flat_ids, int64_t B, int64_t T, const ForwardOptions& opt,
                         ForwardResult& res, ag::Var& aux, KvCache* cache);
  // Final norm and head on x (B * T, d): every row's logits, or each sequence's last row's.
  Tensor head_logits(const ag::Var& x, int64_t B, int64_t T, bool all_positions, const ForwardOptions& opt);
  void check_inference(const Tensor& ids) const;
  // A Cartesian layer's co-usage from its two routers' (N, k) choices.
  CoUsage co_usage_of(const std::string& router_a, const std::string& router_b, const Tensor& idx_a,
                      const Tensor& idx_b) const;
  // indices receives the router's (N, k) choices (-1 = none).
  ag::Var moe_sublayer(const SubLayer& S, const ag::Var& u, const Tensor& ids, const ForwardOptions& opt,
                       ForwardResult& res, ag::Var& aux, Tensor& indices);

  config::ModelConfig cfg_;
  MoeVariant variant_;
  ModelShard shard_;
  bool init_ = true;
  ParallelContext ctx_;
  Device device_ = kCPU;
  std::function<void(size_t)> grad_ready_;
  std::unordered_map<const ag::VarImpl*, ag::Var> hooks_;  // leaf -> hook node, during forward
  std::vector<Param> params_, biases_;
  ag::Var embed_, norm_f_, head_;
  std::vector<Layer> layers_;
  RouterOptions router_opt_;
};

}  // namespace cmoe
