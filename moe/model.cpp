// model.cpp — parameter construction and the forward pass of every variant (see model.h).
#include "moe/model.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "core/ops/attention.h"
#include "core/rng.h"
#include "parallel/expert_parallel.h"
#include "parallel/process_groups.h"
#include "parallel/staging.h"

namespace cmoe {

namespace {
constexpr int64_t kLossChunk = 256;  // rows of logits live at once in the fused cross-entropy

// c (N, 2) -> (c[:, 0], c[:, 1]) as (N) Vars, through gather_rows on the flattened gate.
std::pair<ag::Var, ag::Var> split_gate(const ag::Var& c, int64_t N) {
  std::vector<int32_t> even(N), odd(N);
  for (int64_t n = 0; n < N; ++n) even[n] = static_cast<int32_t>(2 * n), odd[n] = static_cast<int32_t>(2 * n + 1);
  ag::Var flat = ag::reshape(c, {2 * N, 1});
  const Device dev = c.value().device();
  Tensor ie = Tensor::from_ints({N}, even), io = Tensor::from_ints({N}, odd);
  if (!dev.is_cpu()) ie = ie.to(dev), io = io.to(dev);
  return {ag::reshape(ag::gather_rows(flat, ie), {N}), ag::reshape(ag::gather_rows(flat, io), {N})};
}

// The value of a () tensor on the host (a device-to-host copy for a device tensor).
float host_scalar(const Tensor& t) { return t.device().is_cpu() ? t.data<float>()[0] : t.to(kCPU).data<float>()[0]; }
}  // namespace

ag::Var Model::P(const ag::Var& leaf) const {
  auto it = hooks_.find(leaf.impl().get());
  return it == hooks_.end() ? leaf : it->second;
}

Model::Layer Model::hooked(const Layer& L) const {
  if (hooks_.empty()) return L;
  Layer H = L;
  for (ag::Var* v : {&H.ln_in, &H.ln_post, &H.ln_b, &H.wq, &H.wk, &H.wv, &H.wo, &H.w1, &H.w3, &H.w2})
    if (v->defined()) *v = P(*v);
  for (SubLayer& S : H.moe) {
    for (ag::Var* v : {&S.router, &S.gate_w, &S.gate_b, &S.experts.w1, &S.experts.w3, &S.experts.w2})
      if (v->defined()) *v = P(*v);
    for (ExpertWeights& w : S.shared) w = {P(w.w1), P(w.w3), P(w.w2)};
  }
  return H;
}

CoUsage Model::co_usage_of(const std::string& router_a, const std::string& router_b, const Tensor& idx_a,
                           const Tensor& idx_b) const {
  const int64_t N = idx_a.dim(0), ka = idx_a.dim(1), kb = idx_b.dim(1), E = router_opt_.num_experts;
  CMOE_CHECK(idx_b.dim(0) == N, "co-usage: ", N, " and ", idx_b.dim(0), " tokens");
  CoUsage c;
  c.layer = router_a.substr(0, router_a.rfind('.'));
  c.router_a = router_a;
  c.router_b = router_b;
  c.experts_a = c.experts_b = E;
  c.counts.assign(E * E, 0);
  // Device choices come to the host once per layer (2 N k ints).
  const Tensor ha = idx_a.device().is_cpu() ? idx_a : idx_a.to(kCPU);
  const Tensor hb = idx_b.device().is_cpu() ? idx_b : idx_b.to(kCPU);
  const int32_t *A = ha.data<int32_t>(), *B = hb.data<int32_t>();
  for (int64_t n = 0; n < N; ++n)
    for (int64_t i = 0; i < ka; ++i)
      for (int64_t j = 0; j < kb; ++j)
        if (A[n * ka + i] >= 0 && B[n * kb + j] >= 0) ++c.counts[A[n * ka + i] * E + B[n * kb + j]];
  return c;
}

Model::Model(const config::ModelConfig& cfg, uint64_t seed, const ModelShard& shard, bool init)
    : cfg_(cfg), variant_(resolve_variant(cfg)), shard_(shard), init_(init) {
  if (shard_.layer_end < 0) shard_.layer_end = cfg.n_layers();
  CMOE_CHECK(0 <= shard_.layer_begin && shard_.layer_begin <= shard_.layer_end && shard_.layer_end <= cfg.n_layers(),
             "model shard layers [", shard_.layer_begin, ", ", shard_.layer_end, ") of ", cfg.n_layers());
  // Allocate and initialise every parameter param_specs lists, in its order.
  std::unordered_map<std::string, ag::Var> by_name;
  for (const ParamSpec& ps : param_specs(cfg, shard_)) {
    Tensor t;
    switch (ps.init) {
      case ParamSpec::Init::kOnes: t = Tensor::full(ps.shape, 1.0f); break;
      case ParamSpec::Init::kZeros: t = Tensor::full(ps.shape, 0.0f); break;
      case ParamSpec::Init::kNormal: {
        t = Tensor::empty(ps.shape, DType::kF32);
        // Expert rows are drawn at their global offsets, so a slice equals the whole's rows.
        const uint64_t offset = ps.expert_tensor ? static_cast<uint64_t>(ps.row0 * (ps.shape.numel() / ps.shape[0])) : 0;
        if (init_) rng_fill_normal(t, 0.0f, cfg.init_std(), seed, rng_stream_id(ps.name), offset);
        break;
      }
    }
    ag::Var v(t, true, ps.name);
    by_name[ps.name] = v;
    params_.push_back({ps.name, v, ps.decay, ps.sliced, ps.row0, ps.global_rows});
  }
  for (const ParamSpec& bs : router_bias_specs(cfg, shard_)) {
    biases_.push_back({bs.name, ag::Var(Tensor::zeros(bs.shape, DType::kF32), false, bs.name), false});
  }
  auto get = [&by_name](const std::string& name) {
    auto it = by_name.find(name);
    CMOE_CHECK(it != by_name.end(), "model: no parameter ", name);
    return it->second;
  };
  auto has = [&by_name](const std::string& name) { return by_name.count(name) > 0; };

  // Wire the layers to their parameters by name.
  if (shard_.first) embed_ = get("embed.weight");
  for (int l = shard_.layer_begin; l < shard_.layer_end; ++l) {
    const std::string p = absl::StrCat("layers.", l);
    Layer L;
    L.ln_in = get(p + ".ln_in");
    L.wq = get(p + ".attn.wq");
    L.wk = get(p + ".attn.wk");
    L.wv = get(p + ".attn.wv");
    L.wo = get(p + ".attn.wo");
    L.ln_post = get(p + ".ln_post");
    if (!variant_.is_moe_layer(l)) {
      L.w1 = get(p + ".ffn.w1");
      L.w3 = get(p + ".ffn.w3");
      L.w2 = get(p + ".ffn.w2");
      layers_.push_back(std::move(L));
      continue;
    }
    for (const ExpertSet& set : variant_.sets) {
      if (set.own_norm) L.ln_b = get(p + ".ln_b");
      const std::string q = p + "." + set.name;
      SubLayer S;
      S.name = q;
      S.own_norm = set.own_norm;
      if (has(q + ".router")) S.router = get(q + ".router");
      S.experts = {get(q + ".experts.w1"), get(q + ".experts.w3"), get(q + ".experts.w2")};
      for (int i = 0; i < variant_.num_shared; ++i) {
        const std::string sh = variant_.num_shared == 1 ? q + ".shared" : absl::StrCat(q, ".shared.", i);
        S.shared.push_back({get(sh + ".w1"), get(sh + ".w3"), get(sh + ".w2")});
      }
      if (variant_.num_shared > 0) {
        S.gate_w = get(q + ".gate.weight");
        S.gate_b = get(q + ".gate.bias");
      }
      for (size_t i = 0; i < biases_.size(); ++i)
        if (biases_[i].name == q + ".bias") S.bias_index = static_cast<int>(i);
      L.moe.push_back(std::move(S));
    }
    layers_.push_back(std::move(L));
  }
  if (shard_.last) {
    norm_f_ = get("norm.weight");
    head_ = get("lm_head.weight");
  }

  const auto& moe = cfg.moe();
  router_opt_.kind = variant_.router;
  router_opt_.num_experts = variant_.num_experts;
  router_opt_.top_k = variant_.top_k;
  router_opt_.top_p = moe.top_p();
  router_opt_.aux_coef = variant_.balance_losses ? moe.aux_loss_coef() : 0.0f;
  router_opt_.z_coef = variant_.balance_losses ? moe.z_loss_coef() : 0.0f;
  router_opt_.hash_seed = static_cast<uint64_t>(moe.hash_seed());
}

ag::Var Model::attention_block(Layer L, const ag::Var& x, int64_t B, int64_t T, const ForwardOptions& opt,
                               KvCache* cache, size_t layer) {
  const int64_t d = cfg_.d_model(), H = cfg_.n_heads(), Dh = d / H;
  const float scale = 1.0f / std::sqrt(static_cast<float>(Dh));
  if (cache != nullptr) {
    // Inference: this step's keys and values join the cache at their positions; the queries
    // attend to every cached position up to their own.
    const int64_t pos0 = cache->length;
    ag::Var a = ag::rmsnorm(x, L.ln_in, cfg_.norm_eps());
    ag::Var q = ag::rope(ag::reshape(ag::linear(a, L.wq, opt.compute_dtype), {B, T, H, Dh}), cfg_.rope_theta(), pos0);
    ag::Var k = ag::rope(ag::reshape(ag::linear(a, L.wk, opt.compute_dtype), {B, T, H, Dh}), cfg_.rope_theta(), pos0);
    ag::Var v = ag::reshape(ag::linear(a, L.wv, opt.compute_dtype), {B, T, H, Dh});
    for (int64_t b = 0; b < B; ++b) {
      cache->k[layer][b].slice0(pos0, pos0 + T).copy_from(k.value()[b]);
      cache->v[layer][b].slice0(pos0, pos0 + T).copy_from(v.value()[b]);
    }
    Tensor o = Tensor::empty({B, T, H, Dh}, DType::kF32);
    ops::attention_kv_forward(o, q.value(), cache->k[layer], cache->v[layer], scale, pos0);
    return ag::add(x, ag::linear(ag::Var(o.view({B * T, d})), L.wo, opt.compute_dtype));
  }
  // L by value: recompute() runs the block again during backward, after forward returned.
  auto block = [this, L, B, T, d, H, Dh, scale, opt](const std::vector<ag::Var>& in) {
    ag::Var a = ag::rmsnorm(in[0], L.ln_in, cfg_.norm_eps());
    ag::Var q = ag::rope(ag::reshape(ag::linear(a, L.wq, opt.compute_dtype), {B, T, H, Dh}), cfg_.rope_theta());
    ag::Var k = ag::rope(ag::reshape(ag::linear(a, L.wk, opt.compute_dtype), {B, T, H, Dh}), cfg_.rope_theta());
    ag::Var v = ag::reshape(ag::linear(a, L.wv, opt.compute_dtype), {B, T, H, Dh});
    ag::Var o = ag::reshape(ag::attention(q, k, v, scale, opt.compute_dtype), {B * T, d});
    return ag::linear(o, L.wo, opt.compute_dtype);
  };
  ag::Var out = opt.recompute_attention
                    ? ag::recompute(block, {x, L.ln_in, L.wq, L.wk, L.wv, L.wo})
                    : block({x});
  return ag::add(x, out);
}

ag::Var Model::moe_sublayer(const SubLayer& S, const ag::Var& u, const Tensor& ids, const ForwardOptions& opt,
                            ForwardResult& res, ag::Var& aux, Tensor& indices) {
  const int64_t N = u.value().dim(0);
  RouterOptions ro = router_opt_;
  ro.disable_top1 = opt.disable_top1 && ro.kind != RouterKind::kHash &&
                    (opt.disable_top1_set.empty() || S.name.substr(S.name.rfind('.') + 1) == opt.disable_top1_set);
  Tensor bias = S.bias_index >= 0 ? biases_[S.bias_index].var.value() : Tensor();
  ro.stats_group = ctx_.dp;
  RouterOutput r = route(u, S.router, ids, ro, bias);
  indices = r.indices;
  const bool ep = ctx_.ep != nullptr && ctx_.ep->size() > 1;

  RouterReport rep;
  rep.name = S.name;
  rep.counts = r.counts;
  for (int64_t c : r.counts) rep.pairs += c;
  rep.aux = r.aux_value;
  rep.tokens = N;
  rep.prob_tokens = ro.kind == RouterKind::kHash ? 0 : N;
  rep.top1_prob_sum = r.top1_prob_sum;
  rep.entropy_sum = r.entropy_sum;
  rep.routed_gate_sum = static_cast<double>(N);  // c_0 = 1 without a shared expert
  if (r.loss.defined()) aux = aux.defined() ? ag::add(aux, r.loss) : r.loss;

  ag::Var routed;
  if (ep) {
    // Dropless across ranks (a capacity limit per rank would depend on the layout).
    const ExpertWeights& local = S.experts;
    const int64_t local_experts = local.w1.value().dim(0);
    const DType dtype = opt.compute_dtype;
    routed = parallel::expert_parallel_apply(
        u, r.indices, r.weights, ro.num_experts, *ctx_.ep,
        [&local, local_experts, dtype](const ag::Var& x, const Tensor& local_ids, const ag::Var& w) {
          return dispatch_experts(x, dispatch_plan(local_ids, local_experts), w, local, dtype);
        });
  } else {
    DispatchPlan plan = dispatch_plan(r.indices, ro.num_experts, opt.dropless ? 0.0f : cfg_.moe().capacity_factor(),
                                      r.local_counts);
    rep.dropped = plan.dropped;
    routed = dispatch_experts(u, plan, r.weights, S.experts, opt.compute_dtype);
  }
  if (S.shared.empty()) {
    res.routers.push_back(std::move(rep));
    return routed;
  }
  ag::Var shared = swiglu_ffn(u, S.shared[0].w1, S.shared[0].w3, S.shared[0].w2, opt.compute_dtype);
  if (S.shared.size() == 2) {
    shared = ag::scale(ag::add(shared, swiglu_ffn(u, S.shared[1].w1, S.shared[1].w3, S.shared[1].w2,
                                                  opt.compute_dtype)), 0.5f);
  }
  ag::Var c = ag::softmax(ag::add_bias(ag::linear(u, S.gate_w), S.gate_b));  // (N, 2), f32
  auto [c0, c1] = split_gate(c, N);
  rep.routed_gate_sum = 0;
  const Tensor c0h = c0.value().device().is_cpu() ? c0.value() : c0.value().to(kCPU);
  for (int64_t n = 0; n < N; ++n) rep.routed_gate_sum += c0h.data<float>()[n];
  res.routers.push_back(std::move(rep));
  return ag::add(ag::scale_rows(routed, c0), ag::scale_rows(shared, c1));
}

ag::Var Model::layers_forward(ag::Var x, const Tensor& flat_ids, int64_t B, int64_t T, const ForwardOptions& opt,
                              ForwardResult& res, ag::Var& aux, KvCache* cache) {
  for (size_t i = 0; i < layers_.size(); ++i) {
    const Layer L = hooked(layers_[i]);
    ag::Var h = attention_block(L, x, B, T, opt, cache, i);
    ag::Var u = ag::rmsnorm(h, L.ln_post, cfg_.norm_eps());
    if (L.moe.empty()) {
      x = ag::add(h, swiglu_ffn(u, L.w1, L.w3, L.w2, opt.compute_dtype));
      continue;
    }
    // Expert sets in order, each adding to the residual stream; a set with its own norm
    // (Cartesian B) reads RMSNorm_B of the stream so far, the others the post-attention norm.
    x = h;
    std::vector<Tensor> choices(L.moe.size());
    for (size_t s = 0; s < L.moe.size(); ++s) {
      const SubLayer& S = L.moe[s];
      ag::Var in = S.own_norm ? ag::rmsnorm(x, L.ln_b, cfg_.norm_eps()) : u;
      x = ag::add(x, moe_sublayer(S, in, flat_ids, opt, res, aux, choices[s]));
    }
    if (L.moe.size() == 2) res.co_usage.push_back(co_usage_of(L.moe[0].name, L.moe[1].name, choices[0], choices[1]));
  }
  return x;
}

Tensor Model::head_logits(const ag::Var& x, int64_t B, int64_t T, bool all_positions, const ForwardOptions& opt) {
  ag::Var hf = ag::rmsnorm(x, norm_f_, cfg_.norm_eps());
  if (!all_positions && T > 1) {
    std::vector<int32_t> last(static_cast<size_t>(B));
    for (int64_t b = 0; b < B; ++b) last[b] = static_cast<int32_t>(b * T + T - 1);
    hf = ag::gather_rows(hf, Tensor::from_ints({B}, last));
  }
  // The head in the training loss's compute dtype (the fused cross-entropy's matmul).
  return ag::linear(hf, head_, opt.compute_dtype).value();
}

void Model::check_inference(const Tensor& ids) const {
  CMOE_CHECK(shard_.first && shard_.last && shard_.ep == 1, "inference needs the whole model on one process");
  CMOE_CHECK((ctx_.dp == nullptr || ctx_.dp->size() == 1) && (ctx_.ep == nullptr || ctx_.ep->size() == 1),
             "inference runs on one process (no data- or expert-parallel group)");
  CMOE_CHECK(device_.is_cpu(), "inference runs on the CPU; this model is on ", device_.str());
  CMOE_CHECK(ids.rank() == 2 && ids.dtype() == DType::kI32 && ids.numel() > 0, "inference: ids ", ids.str());
  const int32_t* p = ids.data<int32_t>();
  for (int64_t i = 0; i < ids.numel(); ++i)
    CMOE_CHECK(p[i] >= 0 && p[i] < cfg_.vocab_size(), "inference: token id ", p[i], " outside [0, ",
               cfg_.vocab_size(), ")");
}

KvCache Model::kv_cache(int64_t batch, int64_t capacity) const {
  CMOE_CHECK(batch > 0 && capacity > 0 && capacity <= cfg_.seq_len(), "kv_cache: batch ", batch, ", capacity ",
             capacity, " (model.seq_len ", cfg_.seq_len(), ")");
  const int64_t H = cfg_.n_heads(), Dh = cfg_.d_model() / H;
  KvCache c;
  c.capacity = capacity;
  for (size_t l = 0; l < layers_.size(); ++l) {
    c.k.push_back(Tensor::zeros({batch, capacity, H, Dh}, DType::kF32));
    c.v.push_back(Tensor::zeros({batch, capacity, H, Dh}, DType::kF32));
  }
  return c;
}

Tensor Model::forward_cached(const Tensor& ids, KvCache& cache, const ForwardOptions& opt, bool all_positions) {
  check_inference(ids);
  const int64_t B = ids.dim(0), T = ids.dim(1);
  CMOE_CHECK(cache.k.size() == layers_.size() && cache.v.size() == layers_.size() && cache.k[0].dim(0) == B,
             "forward_cached: a cache of ", cache.k.size(), " layers for ", layers_.size(), " layers and ", B,
             " sequences");
  CMOE_CHECK(cache.length + T <= cache.capacity, "forward_cached: positions [", cache.length, ", ",
             cache.length + T, ") past the cache's ", cache.capacity);
  ag::NoGradGuard no_grad;
  ForwardOptions o = opt;
  o.dropless = true;
  o.recompute_attention = false;
  ForwardResult res;
  ag::Var aux;
  Tensor flat_ids = ids.view({B * T});
  ag::Var x = layers_forward(ag::embedding(embed_, flat_ids), flat_ids, B, T, o, res, aux, &cache);
  cache.length += T;
  return head_logits(x, B, T, all_positions, o);
}

Tensor Model::logits(const Tensor& ids, const ForwardOptions& opt) {
  check_inference(ids);
  const int64_t B = ids.dim(0), T = ids.dim(1);
  CMOE_CHECK(T <= cfg_.seq_len(), "logits: sequence of ", T, " tokens > model.seq_len ", cfg_.seq_len());
  ag::NoGradGuard no_grad;
  ForwardOptions o = opt;
  o.dropless = true;
  ForwardResult res;
  ag::Var aux;
  Tensor flat_ids = ids.view({B * T});
  ag::Var x = layers_forward(ag::embedding(embed_, flat_ids), flat_ids, B, T, o, res, aux, nullptr);
  return head_logits(x, B, T, true, o);
}

ForwardResult Model::forward(const Tensor& ids, const Tensor& targets, const ForwardOptions& opt) {
  CMOE_CHECK(shard_.first && shard_.last, "Model::forward needs the whole model; use forward_stage");
  return forward_stage(ids, ag::Var(), targets, opt);
}

ForwardResult Model::forward_stage(const Tensor& ids, const ag::Var& x_in, const Tensor& targets,
                                   const ForwardOptions& opt) {
  CMOE_CHECK(ids.rank() == 2 && ids.dtype() == DType::kI32 && targets.shape() == ids.shape(),
             "forward: ids ", ids.str(), ", targets ", targets.str());
  const int64_t B = ids.dim(0), T = ids.dim(1), N = B * T;
  CMOE_CHECK(T <= cfg_.seq_len(), "sequence of ", T, " tokens > model.seq_len ", cfg_.seq_len());
  CMOE_CHECK(shard_.first || (x_in.defined() && x_in.value().dim(0) == N), "forward_stage: stage input ",
             x_in.defined() ? x_in.value().str() : std::string("missing"), " for ", N, " tokens");
  // Grad-ready hooks: one identity node per parameter between the leaf and all its uses; its
  // backward runs once every use has contributed (topological order), i.e. when the
  // parameter's gradient for this micro-batch is complete.
  hooks_.clear();
  if (grad_ready_ && opt.final_micro_batch && ag::grad_enabled()) {
    for (size_t i = 0; i < params_.size(); ++i) {
      auto leaf = params_[i].var.impl();
      auto ready = grad_ready_;
      hooks_[leaf.get()] = ag::make_result(leaf->value, "grad_ready", {params_[i].var}, [leaf, ready, i](const Tensor& g) {
        ag::accumulate_grad(*leaf, g);
        ready(i);
      });
    }
  }
  Tensor flat_ids = ids.view({N});
  if (!device_.is_cpu()) {
    // The device cannot report a bad index: check the host batch, then upload it once.
    CMOE_CHECK(ids.device().is_cpu() && targets.device().is_cpu(), "forward: ids and targets come from the host");
    const int32_t* pi = ids.data<int32_t>();
    const int32_t* pt = targets.data<int32_t>();
    for (int64_t n = 0; n < N; ++n) {
      CMOE_CHECK(pi[n] >= 0 && pi[n] < cfg_.vocab_size(), "forward: token id ", pi[n], " outside [0, ", cfg_.vocab_size(), ")");
      CMOE_CHECK(pt[n] < cfg_.vocab_size(), "forward: target ", pt[n], " >= vocab ", cfg_.vocab_size());
    }
    flat_ids = flat_ids.to(device_);
  }
  ForwardResult res;
  ag::Var aux;
  ag::Var x = shard_.first ? ag::embedding(P(embed_), flat_ids) : x_in;  // (N, d)
  x = layers_forward(x, flat_ids, B, T, opt, res, aux, nullptr);
  if (aux.defined()) res.aux = host_scalar(aux.value());
  if (!shard_.last) {
    res.hidden = x;
    res.loss = aux;
    hooks_.clear();
    return res;
  }
  ag::Var hf = ag::rmsnorm(x, P(norm_f_), cfg_.norm_eps());
  Tensor flat_targets = targets.view({N});
  for (int64_t n = 0; n < N; ++n) res.tokens += flat_targets.data<int32_t>()[n] >= 0;
  // Global token count of this micro-batch over the data-parallel group.
  int64_t global_tokens = res.tokens;
  int dp = 1;
  if (ctx_.dp != nullptr && ctx_.dp->size() > 1) {
    dp = ctx_.dp->size();
    Tensor t = Tensor::empty({1}, DType::kI64);
    t.data<int64_t>()[0] = res.tokens;
    parallel::comm_or_abort(parallel::all_reduce_host(*ctx_.dp, t), "token count");
    global_tokens = t.data<int64_t>()[0];
  }
  CMOE_CHECK(global_tokens > 0, "forward: the batch has no target tokens");
  res.global_tokens = global_tokens;
  const float ce_scale = static_cast<float>(dp) / static_cast<float>(global_tokens);
  // The cross-entropy's gradient is the seed times ce_scale, as ag::scale's backward computes it.
  const float ce_grad = opt.loss_grad * ce_scale;
  ag::Var ce_sum = ag::cross_entropy(hf, P(head_), device_.is_cpu() ? flat_targets : flat_targets.to(device_),
                                     kLossChunk, opt.compute_dtype, ce_grad);
  ag::Var loss = ag::scale(ce_sum, ce_scale);
  res.ce = static_cast<double>(host_scalar(ce_sum.value())) / static_cast<double>(global_tokens);
  if (aux.defined()) loss = ag::add(loss, aux);
  res.loss = loss;
  hooks_.clear();
  return res;
}

void Model::to_device(Device device) {
  if (device == device_) return;
  for (std::vector<Param>* list : {&params_, &biases_})
    for (Param& p : *list) p.var.mutable_value() = p.var.value().to(device);
  device_ = device;
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
      // (E) floats: a device bias is updated on the host and copied back.
      Tensor& live = biases_[S.bias_index].var.mutable_value();
      Tensor host = live.device().is_cpu() ? live : live.to(kCPU);
      float* b = host.data<float>();
      for (size_t e = 0; e < load.size(); ++e) b[e] += rate * (mean > load[e] ? 1.0f : mean < load[e] ? -1.0f : 0.0f);
      if (!live.device().is_cpu()) live.copy_from(host);
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
