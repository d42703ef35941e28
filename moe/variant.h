// variant.h — every FFN variant of the model family, resolved once from the config into a
// plain description that the model, parameter accounting, export, validation and the command
// line read (nothing else tests the variant kind).
//
//   dense        SwiGLU of D in every layer
//   smoe         N experts of D, top-k, optional shared expert of D with a 2-way gate
//   fine_grained 2N experts of D/2, top-2k; shared = two D/2 FFNs averaged, one gate
//   cartesian    two routed sub-layers A then B, each N sub-experts of D/2, top-k; B has its
//                own RMSNorm; optional shared sub-expert of D/2 per sub-layer
//   hash         N experts of D, the k experts fixed per token id (no router, no balance loss)
//   topp         N experts of D, experts kept until the cumulative probability exceeds top_p
// (docs/model.md explains each.) Adding a variant: one row in kVariantRules (variant.cpp),
// its enum value in moe/model_config.proto, and its tests.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "moe/model_config.pb.h"

namespace cmoe {

enum class RouterKind { kTopK, kTopP, kHash };

// One routed sub-layer of an MoE layer (an expert set): Cartesian layers have A and B.
struct ExpertSet {
  std::string name;           // parameter prefix within a layer: "moe", "moeA", "moeB"
  std::string export_suffix;  // the CartesianMoE authors' module suffix: "", "0", "1"
  bool own_norm = false;      // an RMSNorm (ln_b) on the residual stream before this set
};

struct MoeVariant {
  config::FfnKind kind = config::DENSE;
  std::string name;             // "cartesian" (lower-case config name)
  bool routed = false;          // false: dense model, no expert sets
  int interval = 1;             // MoE layers at 0, interval, 2 * interval, ...
  std::vector<ExpertSet> sets;  // per MoE layer, in forward order
  int64_t num_experts = 0;      // routed experts per set (E)
  int64_t top_k = 0;            // experts chosen per token per set
  int64_t expert_hidden = 0;    // routed expert FFN width (F)
  int num_shared = 0;           // shared FFNs per set: 0, 1, or 2 (averaged)
  int64_t shared_hidden = 0;    // shared FFN width
  RouterKind router = RouterKind::kTopK;
  bool learned_router = true;   // hash: a fixed table instead
  bool renormalise = true;      // top-k weights renormalised over the chosen experts
  bool balance_losses = true;   // aux and z losses apply (hash: none)
  bool selection_bias = false;  // aux-loss-free selection bias (model.moe.aux_free_bias)

  bool is_moe_layer(int layer) const { return routed && layer % interval == 0; }
};

// The description of `m`'s variant. `m` must be valid (validate_model_config).
MoeVariant resolve_variant(const config::ModelConfig& m);

// "cartesian" for CARTESIAN, ... (the config's enum name, lower case).
std::string variant_name(config::FfnKind kind);

// Cross-field rules of the model section: heads divide d_model, even head dim, expert widths,
// top_k within the experts; InvalidArgument naming the fields. Ranges are checked by the run
// config's loader.
absl::Status validate_model_config(const config::ModelConfig& m);

}  // namespace cmoe
