// hf_export.h — cmoe's parameters under Hugging Face names, and the config.json beside them,
// so a PyTorch user can load an exported model (docs/export.md gives the full name table).
//
// Dense parts use Hugging Face LLaMA names (model.embed_tokens.weight,
// model.layers.{l}.self_attn.q_proj.weight, ...). MoE parts use the names of the CartesianMoE
// authors' released model: per layer, experts as model.layers.{l}.mlp.{e}.{gate,up,down}_proj
// (split per expert), router wg, shared-expert gate coefficient, shared expert res_mlp; a
// Cartesian layer has two of each (mlp0/mlp1, wg0/wg1, coefficient0/1, res_mlp0/1) and the
// sub-layer B norm mlp_layernorm. Weights keep PyTorch's (out, in) layout.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/tensor.h"
#include "moe/model_config.pb.h"

namespace cmoe {

struct HfTensor {
  std::string name;  // Hugging Face name
  Tensor tensor;     // CPU; a row view of the source for per-expert slices (aliases it)
};

struct HfExportOptions {
  // Include the non-trained buffers: hash routing tables (model.layers.{l}.hash_table, I64
  // (V, k)) and aux-loss-free selection biases (....wg.e_score_correction_bias, F32 (E)).
  // Off when mapping gradients, which these do not have.
  bool buffers = true;
};

// Looks up a cmoe tensor by its parameter name ("layers.0.moeA.experts.w1"); returns an
// undefined Tensor when absent.
using TensorLookup = std::function<Tensor(const std::string& cmoe_name)>;

// Every tensor of the model `m` under its export name, in a fixed order (model order). A
// parameter the lookup lacks, or one whose shape differs from the config's, is an error.
absl::StatusOr<std::vector<HfTensor>> hf_export_tensors(const config::ModelConfig& m, const TensorLookup& lookup,
                                                        const HfExportOptions& opt = {});

// config.json: the LLaMA keys (vocab_size, hidden_size, intermediate_size, ...) plus the MoE
// keys that say which variant the tensors describe. `dtype` is "float32" or "bfloat16".
std::string hf_config_json(const config::ModelConfig& m, const std::string& dtype);

}  // namespace cmoe
