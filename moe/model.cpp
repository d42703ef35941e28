// model.cpp — parameter construction and the forward pass of every variant (see model.h).
#include "moe/model.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "core/rng.h"
#include "moe/params.h"

namespace cmoe {

namespace {
constexpr int64_t kLossChunk = 256;  // rows of logits live at once in the fused cross-entropy

// c (N, 2) -> (c[:, 0], c[:, 1]) as (N) Vars, through gather_rows on the flattened gate.
std::pair<ag::Var, ag::Var> split_gate(const ag::Var& c, int64_t N) {
  std::vector<int32_t> even(N), odd(N);
  for (int64_t n = 0; n < N; ++n) even[n] = static_cast<int32_t>(2 * n), odd[n] = static_cast<int32_t>(2 * n + 1);
  ag::Var flat = ag::reshape(c, {2 * N, 1});
  return {ag::reshape(ag::gather_rows(flat, Tensor::from_ints({N}, even)), {N}),
          ag::reshape(ag::gather_rows(flat, Tensor::from_ints({N}, odd)), {N})};
}
}  // namespace

ag::Var Model::make_param(const std::string& name, const Shape& shape, float std, bool decay, uint64_t seed) {
  Tensor t = Tensor::empty(shape, DType::kF32);
  rng_fill_normal(t, 0.0f, std, seed, rng_stream_id(name));
  ag::Var v(t, true, name);
  params_.push_back({name, v, decay});
  return v;
}

ag::Var Model::make_const(const std::string& name, const Shape& shape, float value, bool decay) {
  ag::Var v(Tensor::full(shape, value), true, name);
  params_.push_back({name, v, decay});
  return v;
}

Model::SubLayer Model::make_sublayer(const std::string& name, uint64_t seed) {
  const auto& moe = cfg_.moe();
  const int64_t d = cfg_.d_model(), eh = expert_hidden_size(cfg_), D = cfg_.ffn_hidden();
  const int64_t E = moe.kind() == config::FINE_GRAINED ? 2 * moe.num_experts() : moe.num_experts();
  const float std = cfg_.init_std();
  SubLayer s;
  s.name = name;
  if (moe.kind() != config::HASH) s.router = make_param(name + ".router", {E, d}, std, true, seed);
  s.experts.w1 = make_param(name + ".experts.w1", {E, eh, d}, std, true, seed);
  s.experts.w3 = make_param(name + ".experts.w3", {E, eh, d}, std, true, seed);
  s.experts.w2 = make_param(name + ".experts.w2", {E, d, eh}, std, true, seed);
  if (moe.shared_expert()) {
    // Shared expert width: D/2 for cartesian and fine-grained (two of them), D otherwise.
    const bool halves = moe.kind() == config::CARTESIAN || moe.kind() == config::FINE_GRAINED;
    const int64_t sh = halves ? D / 2 : D;
    const int n_shared = moe.kind() == config::FINE_GRAINED ? 2 : 1;
    for (int i = 0; i < n_shared; ++i) {
      std::string p = n_shared == 1 ? name + ".shared" : absl::StrCat(name, ".shared.", i);
      s.shared.push_back({make_param(p + ".w1", {sh, d}, std, true, seed), make_param(p + ".w3", {sh, d}, std, true, seed),
                          make_param(p + ".w2", {d, sh}, std, true, seed)});
    }
    s.gate_w = make_param(name + ".gate.weight", {2, d}, std, true, seed);
    s.gate_b = make_const(name + ".gate.bias", {2}, 0.0f, false);
  }
  if (moe.aux_free_bias() && moe.kind() != config::HASH) {
    s.bias_index = static_cast<int>(biases_.size());
    biases_.push_back({name + ".bias", ag::Var(Tensor::zeros({E}, DType::kF32), false, name + ".bias"), false});
  }
  return s;
}

Model::Model(const config::ModelConfig& cfg, uint64_t seed) : cfg_(cfg) {
  const int64_t V = cfg.vocab_size(), d = cfg.d_model(), D = cfg.ffn_hidden();
  const float std = cfg.init_std();
  embed_ = make_param("embed.weight", {V, d}, std, true, seed);
  for (int l = 0; l < cfg.n_layers(); ++l) {
    const std::string p = absl::StrCat("layers.", l);
    Layer L;
    L.ln_in = make_const(p + ".ln_in", {d}, 1.0f, false);
    L.wq = make_param(p + ".attn.wq", {d, d}, std, true, seed);
    L.wk = make_param(p + ".attn.wk", {d, d}, std, true, seed);
    L.wv = make_param(p + ".attn.wv", {d, d}, std, true, seed);
    L.wo = make_param(p + ".attn.wo", {d, d}, std, true, seed);
    L.ln_post = make_const(p + ".ln_post", {d}, 1.0f, false);
    if (!is_moe_layer(cfg, l)) {
      L.w1 = make_param(p + ".ffn.w1", {D, d}, std, true, seed);
      L.w3 = make_param(p + ".ffn.w3", {D, d}, std, true, seed);
      L.w2 = make_param(p + ".ffn.w2", {d, D}, std, true, seed);
    } else if (cfg.moe().kind() == config::CARTESIAN) {
      L.moe.push_back(make_sublayer(p + ".moeA", seed));
      L.ln_b = make_const(p + ".ln_b", {d}, 1.0f, false);
      L.moe.push_back(make_sublayer(p + ".moeB", seed));
    } else {
      L.moe.push_back(make_sublayer(p + ".moe", seed));
    }
    layers_.push_back(std::move(L));
  }
  norm_f_ = make_const("norm.weight", {d}, 1.0f, false);
  head_ = make_param("lm_head.weight", {V, d}, std, true, seed);

  const auto& moe = cfg.moe();
  router_opt_.kind = moe.kind() == config::HASH   ? RouterKind::kHash
                     : moe.kind() == config::TOPP ? RouterKind::kTopP
                                                  : RouterKind::kTopK;
  router_opt_.num_experts = moe.kind() == config::FINE_GRAINED ? 2 * moe.num_experts() : moe.num_experts();
  router_opt_.top_k = moe.kind() == config::FINE_GRAINED ? 2 * moe.top_k() : moe.top_k();
  router_opt_.top_p = moe.top_p();
  router_opt_.aux_coef = moe.kind() == config::HASH ? 0.0f : moe.aux_loss_coef();
  router_opt_.z_coef = moe.kind() == config::HASH ? 0.0f : moe.z_loss_coef();
  router_opt_.hash_seed = static_cast<uint64_t>(moe.hash_seed());
}

ag::Var Model::attention_block(const Layer& L, const ag::Var& x, int64_t B, int64_t T, const ForwardOptions& opt) {
  const int64_t d = cfg_.d_model(), H = cfg_.n_heads(), Dh = d / H;
  auto block = [this, &L, B, T, d, H, Dh, opt](const std::vector<ag::Var>& in) {
    ag::Var a = ag::rmsnorm(in[0], L.ln_in, cfg_.norm_eps());
    ag::Var q = ag::rope(ag::reshape(ag::linear(a, L.wq, opt.compute_dtype), {B, T, H, Dh}), cfg_.rope_theta());
    ag::Var k = ag::rope(ag::reshape(ag::linear(a, L.wk, opt.compute_dtype), {B, T, H, Dh}), cfg_.rope_theta());
    ag::Var v = ag::reshape(ag::linear(a, L.wv, opt.compute_dtype), {B, T, H, Dh});
    ag::Var o = ag::reshape(ag::attention(q, k, v, 1.0f / std::sqrt(static_cast<float>(Dh))), {B * T, d});
    return ag::linear(o, L.wo, opt.compute_dtype);
  };
  ag::Var out = opt.recompute_attention
                    ? ag::recompute(block, {x, L.ln_in, L.wq, L.wk, L.wv, L.wo})
                    : block({x});
  return ag::add(x, out);
}

ag::Var Model::moe_sublayer(const SubLayer& S, const ag::Var& u, const Tensor& ids, const ForwardOptions& opt,
                            ForwardResult& res, ag::Var& aux) {
  const int64_t N = u.value().dim(0);
  RouterOptions ro = router_opt_;
  ro.disable_top1 = opt.disable_top1 && ro.kind != RouterKind::kHash;
  Tensor bias = S.bias_index >= 0 ? biases_[S.bias_index].var.value() : Tensor();
  RouterOutput r = route(u, S.router, ids, ro, bias);
  DispatchPlan plan = dispatch_plan(r.indices, ro.num_experts, cfg_.moe().capacity_factor());

  RouterReport rep;
  rep.name = S.name;
  rep.counts = r.counts;
  for (int64_t c : r.counts) rep.pairs += c;
  rep.dropped = plan.dropped;
  rep.aux = r.aux_value;
  res.routers.push_back(std::move(rep));
  if (r.loss.defined()) aux = aux.defined() ? ag::add(aux, r.loss) : r.loss;

  ag::Var routed = dispatch_experts(u, plan, r.weights, S.experts, opt.compute_dtype);
  if (S.shared.empty()) return routed;
  ag::Var shared = swiglu_ffn(u, S.shared[0].w1, S.shared[0].w3, S.shared[0].w2, opt.compute_dtype);
  if (S.shared.size() == 2) {
    shared = ag::scale(ag::add(shared, swiglu_ffn(u, S.shared[1].w1, S.shared[1].w3, S.shared[1].w2,
                                                  opt.compute_dtype)), 0.5f);
  }
  ag::Var c = ag::softmax(ag::add_bias(ag::linear(u, S.gate_w), S.gate_b));  // (N, 2), f32
  auto [c0, c1] = split_gate(c, N);
  return ag::add(ag::scale_rows(routed, c0), ag::scale_rows(shared, c1));
}

ForwardResult Model::forward(const Tensor& ids, const Tensor& targets, const ForwardOptions& opt) {
  CMOE_CHECK(ids.rank() == 2 && ids.dtype() == DType::kI32 && targets.shape() == ids.shape(),
             "forward: ids ", ids.str(), ", targets ", targets.str());
  const int64_t B = ids.dim(0), T = ids.dim(1), N = B * T;
  CMOE_CHECK(T <= cfg_.seq_len(), "sequence of ", T, " tokens > model.seq_len ", cfg_.seq_len());
  Tensor flat_ids = ids.view({N});
  ForwardResult res;
  ag::Var aux;
  ag::Var x = ag::embedding(embed_, flat_ids);  // (N, d)
  for (const Layer& L : layers_) {
    ag::Var h = attention_block(L, x, B, T, opt);
    ag::Var u = ag::rmsnorm(h, L.ln_post, cfg_.norm_eps());
    if (L.moe.empty()) {
      x = ag::add(h, swiglu_ffn(u, L.w1, L.w3, L.w2, opt.compute_dtype));
    } else if (L.moe.size() == 1) {
      x = ag::add(h, moe_sublayer(L.moe[0], u, flat_ids, opt, res, aux));
    } else {
      ag::Var h1 = ag::add(h, moe_sublayer(L.moe[0], u, flat_ids, opt, res, aux));
      ag::Var ub = ag::rmsnorm(h1, L.ln_b, cfg_.norm_eps());
      x = ag::add(h1, moe_sublayer(L.moe[1], ub, flat_ids, opt, res, aux));
    }
  }
  ag::Var hf = ag::rmsnorm(x, norm_f_, cfg_.norm_eps());
  Tensor flat_targets = targets.view({N});
  for (int64_t n = 0; n < N; ++n) res.tokens += flat_targets.data<int32_t>()[n] >= 0;
  CMOE_CHECK(res.tokens > 0, "forward: the batch has no target tokens");
  ag::Var ce_sum = ag::cross_entropy(hf, head_, flat_targets, kLossChunk, opt.compute_dtype);
  ag::Var loss = ag::scale(ce_sum, 1.0f / static_cast<float>(res.tokens));
  res.ce = loss.value().data<float>()[0];
  if (aux.defined()) {
    res.aux = aux.value().data<float>()[0];
    loss = ag::add(loss, aux);
  }
  res.loss = loss;
  return res;
}

void Model::update_router_biases(const std::vector<RouterReport>& reports, float rate) {
  for (const Layer& L : layers_) {
    for (const SubLayer& S : L.moe) {
      if (S.bias_index < 0) continue;
      // Sum this router's loads over the reports given (several micro-batches).
      std::vector<double> load(router_opt_.num_experts, 0.0);
      for (const RouterReport& r : reports)
        if (r.name == S.name)
          for (size_t e = 0; e < r.counts.size(); ++e) load[e] += r.counts[e];
      double mean = 0;
      for (double v : load) mean += v / load.size();
      float* b = biases_[S.bias_index].var.mutable_value().data<float>();
      for (size_t e = 0; e < load.size(); ++e) b[e] += rate * (mean > load[e] ? 1.0f : mean < load[e] ? -1.0f : 0.0f);
    }
  }
}

double Model::flops_per_token() const {
  // 6 FLOPs per activated matmul parameter (forward 2, backward 4), excluding the embedding
  // lookup and the norms; plus causal attention: QK^T and PV are 2 * 2 * T * d per token
  // forward at full length, halved by the mask, times 3 for backward -> 6 * T * d per layer.
  ParamCounts pc = count_params(cfg_);
  double matmul = 0;
  for (const ParamComponent& c : pc.components)
    if (c.name != "embedding" && c.name != "norms") matmul += static_cast<double>(c.activated);
  return 6.0 * matmul + 6.0 * cfg_.n_layers() * static_cast<double>(cfg_.seq_len()) * cfg_.d_model();
}

}  // namespace cmoe
