// params.cpp — parameter lists and counts (see params.h).
#include "moe/params.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "parallel/process_groups.h"

namespace cmoe {

ModelShard pipeline_shard(int n_layers, int pp, int stage, int ep, int ep_rank) {
  CMOE_CHECK(pp >= 1 && stage >= 0 && stage < pp, "pipeline stage ", stage, " of ", pp);
  ModelShard s;
  const int base = n_layers / pp, extra = n_layers % pp;
  s.layer_begin = stage * base + std::min(stage, extra);
  s.layer_end = s.layer_begin + base + (stage < extra ? 1 : 0);
  s.first = stage == 0;
  s.last = stage == pp - 1;
  s.ep = ep;
  s.ep_rank = ep_rank;
  return s;
}

Shape ParamSpec::global_shape() const {
  Shape g = shape;
  if (expert_tensor) g[0] = global_rows;
  return g;
}

namespace {

using Init = ParamSpec::Init;

int layer_end(const config::ModelConfig& m, const ModelShard& s) { return s.layer_end < 0 ? m.n_layers() : s.layer_end; }

}  // namespace

std::vector<ParamSpec> param_specs(const config::ModelConfig& m, const ModelShard& s) {
  const MoeVariant v = resolve_variant(m);
  const int64_t V = m.vocab_size(), d = m.d_model(), D = m.ffn_hidden();
  std::vector<ParamSpec> out;
  auto add = [&out](std::string name, Shape shape, Init init = Init::kNormal) {
    const bool decay = init == Init::kNormal;  // norms and gate biases are not decayed
    out.push_back({std::move(name), shape, init, decay});
  };
  if (s.first) add("embed.weight", {V, d});
  for (int l = s.layer_begin; l < layer_end(m, s); ++l) {
    const std::string p = absl::StrCat("layers.", l);
    add(p + ".ln_in", {d}, Init::kOnes);
    for (const char* w : {".attn.wq", ".attn.wk", ".attn.wv", ".attn.wo"}) add(p + w, {d, d});
    add(p + ".ln_post", {d}, Init::kOnes);
    if (!v.is_moe_layer(l)) {
      add(p + ".ffn.w1", {D, d});
      add(p + ".ffn.w3", {D, d});
      add(p + ".ffn.w2", {d, D});
      continue;
    }
    const int64_t E = v.num_experts, F = v.expert_hidden, S = v.shared_hidden;
    const parallel::ExpertRange r = parallel::owned_experts(E, s.ep, s.ep_rank);
    for (const ExpertSet& set : v.sets) {
      if (set.own_norm) add(p + ".ln_b", {d}, Init::kOnes);
      const std::string q = p + "." + set.name;
      if (v.learned_router) add(q + ".router", {E, d});
      for (auto [w, rows, cols] : {std::tuple{".experts.w1", F, d}, {".experts.w3", F, d}, {".experts.w2", d, F}}) {
        add(q + w, {r.size(), rows, cols});
        ParamSpec& e = out.back();
        e.expert_tensor = true;
        e.row0 = r.begin;
        e.global_rows = E;
        e.sliced = s.ep > 1;
      }
      for (int i = 0; i < v.num_shared; ++i) {
        const std::string sh = v.num_shared == 1 ? q + ".shared" : absl::StrCat(q, ".shared.", i);
        add(sh + ".w1", {S, d});
        add(sh + ".w3", {S, d});
        add(sh + ".w2", {d, S});
      }
      if (v.num_shared > 0) {
        add(q + ".gate.weight", {2, d});
        add(q + ".gate.bias", {2}, Init::kZeros);
      }
    }
  }
  if (s.last) {
    add("norm.weight", {d}, Init::kOnes);
    add("lm_head.weight", {V, d});
  }
  return out;
}

std::vector<ParamSpec> router_bias_specs(const config::ModelConfig& m, const ModelShard& s) {
  const MoeVariant v = resolve_variant(m);
  std::vector<ParamSpec> out;
  if (!v.selection_bias) return out;
  for (int l = s.layer_begin; l < layer_end(m, s); ++l) {
    if (!v.is_moe_layer(l)) continue;
    for (const ExpertSet& set : v.sets) out.push_back({absl::StrCat("layers.", l, ".", set.name, ".bias"), {v.num_experts}, Init::kZeros, false});
  }
  return out;
}

ParamCounts count_params(const config::ModelConfig& m) {
  const MoeVariant v = resolve_variant(m);
  const int64_t d = m.d_model(), V = m.vocab_size(), D = m.ffn_hidden();
  const int64_t swiglu_d = 3 * d * D;  // gate, up, down
  const int64_t expert = 3 * d * v.expert_hidden, shared_ffn = 3 * d * v.shared_hidden;
  const int64_t gate2 = 2 * d + 2;  // shared-expert gate W_c (d x 2) with bias

  ParamComponent emb{"embedding", V * d, V * d}, head{"lm_head", V * d, V * d};
  ParamComponent attn{"attention", 0, 0}, norms{"norms", d, d}, dense{"dense_ffn", 0, 0};
  ParamComponent routed{"routed_experts", 0, 0}, shared{"shared_experts", 0, 0};
  ParamComponent routers{"routers", 0, 0};

  for (int layer = 0; layer < m.n_layers(); ++layer) {
    attn.total += 4 * d * d;
    norms.total += 2 * d;  // input and post-attention RMSNorm
    if (!v.is_moe_layer(layer)) {
      dense.total += swiglu_d;
      continue;
    }
    for (const ExpertSet& set : v.sets) {
      if (set.own_norm) norms.total += d;
      if (v.learned_router) routers.total += d * v.num_experts;
      routed.total += v.num_experts * expert;
      routed.activated += v.top_k * expert;
      if (v.num_shared > 0) shared.total += v.num_shared * shared_ffn + gate2;
    }
  }
  attn.activated = attn.total;
  norms.activated = norms.total;
  dense.activated = dense.total;
  shared.activated = shared.total;
  routers.activated = routers.total;

  ParamCounts out;
  for (const ParamComponent& c : {emb, attn, norms, dense, routers, routed, shared, head}) {
    if (c.total == 0) continue;
    out.components.push_back(c);
    out.total += c.total;
    out.activated += c.activated;
  }
  return out;
}

}  // namespace cmoe
