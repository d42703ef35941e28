// params.h — parameter counts of a model config, total and activated per token, by component.
//
// Counted from the config alone (no allocation), with the same layer plan the model builds:
// MoE layers at indices 0, interval, 2*interval, ...; dense SwiGLU FFNs elsewhere.
// "Activated" counts the parameters one token's forward pass touches: everything outside the
// routed experts, plus top_k routed experts per router (top_p: the top_k budget; hash: k).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/config/config.h"

namespace cmoe {

struct ParamComponent {
  std::string name;  // "embedding", "attention", "norms", "dense_ffn", "routed_experts", ...
  int64_t total = 0;
  int64_t activated = 0;
};

struct ParamCounts {
  std::vector<ParamComponent> components;
  int64_t total = 0;
  int64_t activated = 0;
};

// Routed expert hidden size for a config (model.moe.expert_hidden, or derived from the kind).
int64_t expert_hidden_size(const config::ModelConfig& m);
bool is_moe_layer(const config::ModelConfig& m, int layer);
ParamCounts count_params(const config::ModelConfig& m);

}  // namespace cmoe
