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
// without a shared expert (docs: ../shared/docs/cartesianmoe.md).
//
// Parameters are leaves named like "layers.3.moeA.experts.w1"; each is initialised from the
// Philox stream of its name, so a value never depends on the parallel layout.
#pragma once

#include <string>
#include <vector>

#include "autograd/ops.h"
#include "core/config/config.h"
#include "moe/dispatch.h"
#include "moe/router.h"

namespace cmoe {

struct Param {
  std::string name;
  ag::Var var;        // f32 master weight; grad accumulates here
  bool decay = true;  // AdamW weight decay (off for norms and gate biases)
};

struct ForwardOptions {
  DType compute_dtype = DType::kF32;  // matmul inputs: f32 or bf16 (f32 accumulation)
  bool disable_top1 = false;          // evaluation: exclude each token's top-1 expert
  bool recompute_attention = false;   // activation recomputation of each attention block
};

struct RouterReport {
  std::string name;              // "layers.0.moeA"
  std::vector<int64_t> counts;   // (E) routed pairs per expert
  int64_t pairs = 0;             // routed (token, choice) pairs before dropping
  int64_t dropped = 0;           // pairs dropped by the capacity limit
  double aux = 0;                // unscaled balance term (1.0 = balanced)
};

struct ForwardResult {
  ag::Var loss;       // () mean CE + balance losses: what backward starts from
  double ce = 0;      // mean token cross-entropy (nats)
  int64_t tokens = 0; // tokens with a target
  double aux = 0;     // total scaled balance loss
  std::vector<RouterReport> routers;
};

class Model {
 public:
  Model(const config::ModelConfig& cfg, uint64_t seed);

  // ids, targets: (B, T) i32; targets < 0 are ignored.
  ForwardResult forward(const Tensor& ids, const Tensor& targets, const ForwardOptions& opt);

  std::vector<Param>& params() { return params_; }
  const config::ModelConfig& config() const { return cfg_; }
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
  };
  struct Layer {
    ag::Var ln_in, ln_post, ln_b, wq, wk, wv, wo;
    ag::Var w1, w3, w2;           // dense FFN
    std::vector<SubLayer> moe;    // 0 (dense), 1, or 2 (cartesian A, B)
  };

  ag::Var make_param(const std::string& name, const Shape& shape, float std, bool decay, uint64_t seed);
  ag::Var make_const(const std::string& name, const Shape& shape, float value, bool decay);
  SubLayer make_sublayer(const std::string& name, uint64_t seed);
  ag::Var attention_block(const Layer& L, const ag::Var& x, int64_t B, int64_t T, const ForwardOptions& opt);
  ag::Var moe_sublayer(const SubLayer& S, const ag::Var& u, const Tensor& ids, const ForwardOptions& opt,
                       ForwardResult& res, ag::Var& aux);

  config::ModelConfig cfg_;
  std::vector<Param> params_, biases_;
  ag::Var embed_, norm_f_, head_;
  std::vector<Layer> layers_;
  RouterOptions router_opt_;
};

}  // namespace cmoe
