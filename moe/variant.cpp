// variant.cpp — the variant table and its resolution (see variant.h).
#include "moe/variant.h"

#include <iterator>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "core/check.h"

namespace cmoe {

namespace {

// One row per variant: how it scales the config's N, k and D into its expert sets.
struct VariantRule {
  config::FfnKind kind;
  int sets;            // routed sub-layers per MoE layer (0: dense)
  int expert_mult;     // routed experts per set = expert_mult * N
  int top_k_mult;      // experts per token per set = top_k_mult * k
  int hidden_div;      // routed expert width = D / hidden_div (unless model.moe.expert_hidden)
  int shared_count;    // shared FFNs per set when model.moe.shared_expert
  int shared_div;      // shared FFN width = D / shared_div
  RouterKind router;
};

constexpr VariantRule kVariantRules[] = {
    {config::DENSE, 0, 0, 0, 1, 0, 1, RouterKind::kTopK},
    {config::SMOE, 1, 1, 1, 1, 1, 1, RouterKind::kTopK},
    {config::FINE_GRAINED, 1, 2, 2, 2, 2, 2, RouterKind::kTopK},
    {config::CARTESIAN, 2, 1, 1, 2, 1, 2, RouterKind::kTopK},
    {config::HASH, 1, 1, 1, 1, 1, 1, RouterKind::kHash},
    {config::TOPP, 1, 1, 1, 1, 1, 1, RouterKind::kTopP},
};
static_assert(std::size(kVariantRules) == config::FfnKind_ARRAYSIZE, "one variant rule per FfnKind");

const VariantRule& rule_of(config::FfnKind kind) {
  for (const VariantRule& r : kVariantRules)
    if (r.kind == kind) return r;
  CMOE_CHECK(false, "no variant rule for FfnKind ", static_cast<int>(kind));
  return kVariantRules[0];
}

absl::Status rule(bool ok, const std::string& message) {
  return ok ? absl::OkStatus() : absl::InvalidArgumentError(absl::StrCat("config: ", message));
}

}  // namespace

std::string variant_name(config::FfnKind kind) { return absl::AsciiStrToLower(config::FfnKind_Name(kind)); }

MoeVariant resolve_variant(const config::ModelConfig& m) {
  const auto& moe = m.moe();
  const VariantRule& r = rule_of(moe.kind());
  MoeVariant v;
  v.kind = moe.kind();
  v.name = variant_name(moe.kind());
  v.routed = r.sets > 0;
  v.interval = moe.interval();
  if (!v.routed) return v;
  if (r.sets == 1) {
    v.sets = {{"moe", "", false}};
  } else {
    v.sets = {{"moeA", "0", false}, {"moeB", "1", true}};
  }
  v.num_experts = r.expert_mult * static_cast<int64_t>(moe.num_experts());
  v.top_k = r.top_k_mult * static_cast<int64_t>(moe.top_k());
  v.expert_hidden = moe.expert_hidden() > 0 ? moe.expert_hidden() : m.ffn_hidden() / r.hidden_div;
  v.num_shared = moe.shared_expert() ? r.shared_count : 0;
  v.shared_hidden = m.ffn_hidden() / r.shared_div;
  v.router = r.router;
  v.learned_router = r.router != RouterKind::kHash;
  v.renormalise = r.router == RouterKind::kTopK;
  v.balance_losses = v.learned_router;
  v.selection_bias = moe.aux_free_bias() && v.learned_router;
  return v;
}

absl::Status validate_model_config(const config::ModelConfig& m) {
  const auto& moe = m.moe();
  CMOE_RETURN_IF_ERROR(rule(m.d_model() % m.n_heads() == 0,
                            absl::StrCat("model.n_heads = ", m.n_heads(), " must divide model.d_model = ", m.d_model())));
  CMOE_RETURN_IF_ERROR(rule((m.d_model() / m.n_heads()) % 2 == 0,
                            absl::StrCat("head dim model.d_model / model.n_heads = ", m.d_model() / m.n_heads(),
                                         " must be even (RoPE rotates pairs)")));
  const VariantRule& r = rule_of(moe.kind());
  if (r.sets == 0) return absl::OkStatus();
  const bool divides = r.hidden_div == 1 || moe.expert_hidden() > 0 || m.ffn_hidden() % r.hidden_div == 0;
  CMOE_RETURN_IF_ERROR(rule(divides, absl::StrCat("model.ffn_hidden = ", m.ffn_hidden(), " must be even: ",
                                                  config::FfnKind_Name(moe.kind()), " experts have D/2")));
  const int64_t routed = r.expert_mult * static_cast<int64_t>(moe.num_experts());
  const int64_t k = r.top_k_mult * static_cast<int64_t>(moe.top_k());
  return rule(k <= routed, absl::StrCat("model.moe.top_k = ", moe.top_k(), " selects ", k, " of only ", routed,
                                        " experts"));
}

}  // namespace cmoe
