// params.h — a model's parameters without building it: the list of one rank's parameters
// (names, shapes, initialisation, expert slices) and the parameter counts of a config.
//
// param_specs is the single source of the parameter list: Model allocates exactly these, in
// this order, and the training library derives a checkpoint's layout (which tensors, global
// shapes, which rows each rank holds) from them without allocating anything.
// Layer plan: MoE layers at indices 0, interval, 2*interval, ... (GShard formation); dense
// SwiGLU FFNs elsewhere. "Activated" counts the parameters one token's forward pass touches:
// everything outside the routed experts, plus top_k routed experts per router (top_p: the
// top_k budget; hash: k).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "moe/model_config.pb.h"
#include "moe/variant.h"

namespace cmoe {

// The part of the model one rank builds (the default is the whole model).
struct ModelShard {
  int layer_begin = 0, layer_end = -1;  // -1 = n_layers
  bool first = true, last = true;       // embedding here / final norm, head and loss here
  int ep = 1, ep_rank = 0;              // expert slice: parallel::owned_experts(E, ep, ep_rank)
};

// Layer range of pipeline stage `stage` of `pp`: n_layers split into pp contiguous runs whose
// sizes differ by at most one, the earlier stages taking the larger runs (the embedding lookup
// is cheap; the head's matmul and loss make the last stage the heaviest without an extra layer).
ModelShard pipeline_shard(int n_layers, int pp, int stage, int ep, int ep_rank);

struct ParamSpec {
  enum class Init { kNormal, kOnes, kZeros };
  std::string name;  // "layers.3.moeA.experts.w1"; also the Philox stream of its initial values
  Shape shape;       // this rank's tensor (expert tensors: its rows of dim 0)
  Init init = Init::kNormal;
  bool decay = true;          // AdamW weight decay
  bool expert_tensor = false;  // an (E, ...) expert tensor, sliced over expert parallelism
  int64_t row0 = 0, global_rows = 0;  // expert tensors: rows [row0, row0 + shape[0]) of global_rows
  // Marked as an expert slice for the parallel layers (Param::expert): expert tensors when
  // ep > 1.
  bool sliced = false;
  Shape global_shape() const;
};

// Every parameter of shard `s` of model `m`, in model order (the order Model::params() has).
std::vector<ParamSpec> param_specs(const config::ModelConfig& m, const ModelShard& s = {});
// The aux-loss-free selection biases of the shard's routers, (E) f32 each, "<set>.bias".
std::vector<ParamSpec> router_bias_specs(const config::ModelConfig& m, const ModelShard& s = {});

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

ParamCounts count_params(const config::ModelConfig& m);

}  // namespace cmoe
