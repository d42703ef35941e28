// params.cpp — parameter counting (see params.h).
#include "moe/params.h"

namespace cmoe {

int64_t expert_hidden_size(const config::ModelConfig& m) {
  const auto& moe = m.moe();
  if (moe.expert_hidden() > 0) return moe.expert_hidden();
  switch (moe.kind()) {
    case config::CARTESIAN:
    case config::FINE_GRAINED: return m.ffn_hidden() / 2;
    default: return m.ffn_hidden();
  }
}

bool is_moe_layer(const config::ModelConfig& m, int layer) {
  return m.moe().kind() != config::DENSE && layer % m.moe().interval() == 0;
}

ParamCounts count_params(const config::ModelConfig& m) {
  const int64_t d = m.d_model(), v = m.vocab_size(), D = m.ffn_hidden();
  const auto& moe = m.moe();
  const int64_t swiglu_d = 3 * d * D;  // gate, up, down
  const int64_t n = moe.num_experts(), k = moe.top_k(), eh = expert_hidden_size(m);
  const int64_t expert = 3 * d * eh;
  const int64_t gate2 = 2 * d + 2;  // shared-expert gate W_c (d x 2) with bias

  ParamComponent emb{"embedding", v * d, v * d}, head{"lm_head", v * d, v * d};
  ParamComponent attn{"attention", 0, 0}, norms{"norms", d, d}, dense{"dense_ffn", 0, 0};
  ParamComponent routed{"routed_experts", 0, 0}, shared{"shared_experts", 0, 0};
  ParamComponent routers{"routers", 0, 0};

  for (int layer = 0; layer < m.n_layers(); ++layer) {
    attn.total += 4 * d * d;
    norms.total += 2 * d;  // input and post-attention RMSNorm
    if (!is_moe_layer(m, layer)) {
      dense.total += swiglu_d;
      continue;
    }
    const bool with_shared = moe.shared_expert();
    switch (moe.kind()) {
      case config::CARTESIAN:
        // Two sub-layers, each: router (d x N), N sub-experts, shared sub-expert + gate.
        norms.total += d;  // RMSNorm_B
        routers.total += 2 * d * n;
        routed.total += 2 * n * expert;
        routed.activated += 2 * k * expert;
        if (with_shared) shared.total += 2 * (expert + gate2);
        break;
      case config::FINE_GRAINED:
        // 2N experts of D/2 with top-2k; shared = two D/2 FFNs averaged, one gate.
        routers.total += d * 2 * n;
        routed.total += 2 * n * expert;
        routed.activated += 2 * k * expert;
        if (with_shared) shared.total += 2 * expert + gate2;
        break;
      case config::HASH:
        // Fixed token-id table: no learned router.
        routed.total += n * expert;
        routed.activated += k * expert;
        if (with_shared) shared.total += swiglu_d + gate2;
        break;
      default:  // SMOE, TOPP
        routers.total += d * n;
        routed.total += n * expert;
        routed.activated += k * expert;
        if (with_shared) shared.total += swiglu_d + gate2;
        break;
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
