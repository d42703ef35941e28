// hf_export.cpp — the cmoe -> Hugging Face name mapping and config.json (see hf_export.h).
#include "moe/hf_export.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/json.h"
#include "moe/router.h"
#include "moe/variant.h"

namespace cmoe {

namespace {

class Mapper {
 public:
  Mapper(const TensorLookup& lookup, std::vector<HfTensor>& out) : lookup_(lookup), out_(out) {}

  // Adds the cmoe tensor `src` (checked against `shape`) as `dst`.
  absl::Status take(const std::string& src, const Shape& shape, const std::string& dst) {
    CMOE_ASSIGN_OR_RETURN(Tensor t, get(src, shape));
    out_.push_back({dst, t});
    return absl::OkStatus();
  }
  // Adds expert e of the (E, ...) tensor `src` as dst_of(e).
  absl::Status split(const std::string& src, const Shape& shape, const std::function<std::string(int64_t)>& dst_of) {
    CMOE_ASSIGN_OR_RETURN(Tensor t, get(src, shape));
    for (int64_t e = 0; e < shape[0]; ++e) out_.push_back({dst_of(e), t[e]});
    return absl::OkStatus();
  }

 private:
  absl::StatusOr<Tensor> get(const std::string& src, const Shape& shape) {
    Tensor t = lookup_(src);
    if (!t.defined()) return absl::NotFoundError(absl::StrCat("export: no tensor \"", src, "\""));
    if (!(t.shape() == shape))
      return absl::InvalidArgumentError(
          absl::StrCat("export: tensor \"", src, "\" has shape ", t.shape().str(), ", the config implies ", shape.str()));
    return t;
  }

  const TensorLookup& lookup_;
  std::vector<HfTensor>& out_;
};

}  // namespace

absl::StatusOr<std::vector<HfTensor>> hf_export_tensors(const config::ModelConfig& m, const TensorLookup& lookup,
                                                        const HfExportOptions& opt) {
  const MoeVariant v = resolve_variant(m);
  const int64_t V = m.vocab_size(), d = m.d_model(), D = m.ffn_hidden();
  const int64_t E = v.num_experts, K = v.top_k, F = v.expert_hidden, S = v.shared_hidden;
  std::vector<HfTensor> out;
  Mapper map(lookup, out);
  CMOE_RETURN_IF_ERROR(map.take("embed.weight", {V, d}, "model.embed_tokens.weight"));
  for (int l = 0; l < m.n_layers(); ++l) {
    const std::string src = absl::StrCat("layers.", l), dst = absl::StrCat("model.layers.", l);
    CMOE_RETURN_IF_ERROR(map.take(src + ".ln_in", {d}, dst + ".input_layernorm.weight"));
    for (const char* p : {"q", "k", "v", "o"})
      CMOE_RETURN_IF_ERROR(map.take(absl::StrCat(src, ".attn.w", p), {d, d}, absl::StrCat(dst, ".self_attn.", p, "_proj.weight")));
    CMOE_RETURN_IF_ERROR(map.take(src + ".ln_post", {d}, dst + ".post_attention_layernorm.weight"));
    if (!v.is_moe_layer(l)) {
      CMOE_RETURN_IF_ERROR(map.take(src + ".ffn.w1", {D, d}, dst + ".mlp.gate_proj.weight"));
      CMOE_RETURN_IF_ERROR(map.take(src + ".ffn.w3", {D, d}, dst + ".mlp.up_proj.weight"));
      CMOE_RETURN_IF_ERROR(map.take(src + ".ffn.w2", {d, D}, dst + ".mlp.down_proj.weight"));
      continue;
    }
    for (const ExpertSet& set : v.sets) {
      // The authors' names: one routed sub-layer "mlp", or Cartesian A and B "mlp0", "mlp1".
      const std::string s = src + "." + set.name, x = set.export_suffix;
      if (set.own_norm) CMOE_RETURN_IF_ERROR(map.take(src + ".ln_b", {d}, dst + ".mlp_layernorm.weight"));
      if (v.learned_router) CMOE_RETURN_IF_ERROR(map.take(s + ".router", {E, d}, absl::StrCat(dst, ".wg", x, ".weight")));
      const std::string mlp = absl::StrCat(dst, ".mlp", x, ".");
      CMOE_RETURN_IF_ERROR(map.split(s + ".experts.w1", {E, F, d}, [&](int64_t e) { return absl::StrCat(mlp, e, ".gate_proj.weight"); }));
      CMOE_RETURN_IF_ERROR(map.split(s + ".experts.w3", {E, F, d}, [&](int64_t e) { return absl::StrCat(mlp, e, ".up_proj.weight"); }));
      CMOE_RETURN_IF_ERROR(map.split(s + ".experts.w2", {E, d, F}, [&](int64_t e) { return absl::StrCat(mlp, e, ".down_proj.weight"); }));
      const int n_shared = v.num_shared;
      for (int i = 0; i < n_shared; ++i) {
        const std::string from = n_shared == 1 ? s + ".shared" : absl::StrCat(s, ".shared.", i);
        const std::string to = n_shared == 1 ? absl::StrCat(dst, ".res_mlp", x, ".") : absl::StrCat(dst, ".res_mlp", x, ".", i, ".");
        CMOE_RETURN_IF_ERROR(map.take(from + ".w1", {S, d}, to + "gate_proj.weight"));
        CMOE_RETURN_IF_ERROR(map.take(from + ".w3", {S, d}, to + "up_proj.weight"));
        CMOE_RETURN_IF_ERROR(map.take(from + ".w2", {d, S}, to + "down_proj.weight"));
      }
      if (n_shared > 0) {
        CMOE_RETURN_IF_ERROR(map.take(s + ".gate.weight", {2, d}, absl::StrCat(dst, ".coefficient", x, ".weight")));
        CMOE_RETURN_IF_ERROR(map.take(s + ".gate.bias", {2}, absl::StrCat(dst, ".coefficient", x, ".bias")));
      }
      if (opt.buffers && v.selection_bias)
        CMOE_RETURN_IF_ERROR(map.take(s + ".bias", {E}, absl::StrCat(dst, ".wg", x, ".e_score_correction_bias")));
    }
    if (opt.buffers && v.router == RouterKind::kHash) {
      // The fixed token -> experts table, so a loader needs no copy of cmoe's hash function.
      Tensor table = Tensor::empty({V, K}, DType::kI64);
      std::vector<int32_t> row(K);
      for (int64_t tok = 0; tok < V; ++tok) {
        hash_experts(row.data(), tok, K, E, static_cast<uint64_t>(m.moe().hash_seed()));
        for (int64_t j = 0; j < K; ++j) table.data<int64_t>()[tok * K + j] = row[j];
      }
      out.push_back({dst + ".hash_table", table});
    }
  }
  CMOE_RETURN_IF_ERROR(map.take("norm.weight", {d}, "model.norm.weight"));
  CMOE_RETURN_IF_ERROR(map.take("lm_head.weight", {V, d}, "lm_head.weight"));
  return out;
}

std::string hf_config_json(const config::ModelConfig& m, const std::string& dtype) {
  const MoeVariant v = resolve_variant(m);
  const auto& moe = m.moe();
  json::Value j = json::Value::object();
  auto num = [](double x) { return json::Value::formatted(x, "%.9g"); };
  // A dense export is a plain LLaMA checkpoint that transformers' LlamaForCausalLM loads as is.
  json::Value arch = json::Value::array();
  arch.push_back(json::Value::string(v.routed ? "CmoeForCausalLM" : "LlamaForCausalLM"));
  j.set("architectures", std::move(arch));
  j.set("model_type", json::Value::string(v.routed ? "cmoe" : "llama"));
  j.set("vocab_size", json::Value::integer(m.vocab_size()));
  j.set("hidden_size", json::Value::integer(m.d_model()));
  j.set("intermediate_size", json::Value::integer(m.ffn_hidden()));
  j.set("num_hidden_layers", json::Value::integer(m.n_layers()));
  j.set("num_attention_heads", json::Value::integer(m.n_heads()));
  j.set("num_key_value_heads", json::Value::integer(m.n_heads()));
  j.set("head_dim", json::Value::integer(m.d_model() / m.n_heads()));
  j.set("max_position_embeddings", json::Value::integer(m.seq_len()));
  j.set("rms_norm_eps", num(m.norm_eps()));
  j.set("rope_theta", num(m.rope_theta()));
  j.set("hidden_act", json::Value::string("silu"));
  j.set("attention_bias", json::Value::boolean(false));
  j.set("tie_word_embeddings", json::Value::boolean(false));
  j.set("initializer_range", num(m.init_std()));
  j.set("torch_dtype", json::Value::string(dtype));
  j.set("moe_kind", json::Value::string(v.name));
  if (v.routed) {
    json::Value layers = json::Value::array();
    for (int l = 0; l < m.n_layers(); ++l)
      if (v.is_moe_layer(l)) layers.push_back(json::Value::integer(l));
    j.set("moe_layers", std::move(layers));
    j.set("moe_interval", json::Value::integer(moe.interval()));
    j.set("num_experts", json::Value::integer(v.num_experts));
    j.set("num_experts_per_tok", json::Value::integer(v.top_k));
    j.set("moe_intermediate_size", json::Value::integer(v.expert_hidden));
    j.set("num_shared_experts", json::Value::integer(v.num_shared));
    j.set("shared_intermediate_size", json::Value::integer(v.shared_hidden));
    j.set("router_kind", json::Value::string(v.router == RouterKind::kHash   ? "hash"
                                             : v.router == RouterKind::kTopP ? "topp"
                                                                             : "topk"));
    j.set("norm_topk_prob", json::Value::boolean(v.renormalise && v.top_k > 1));
    j.set("top_p", num(moe.top_p()));
    j.set("router_aux_loss_coef", num(v.balance_losses ? moe.aux_loss_coef() : 0.0));
    j.set("router_z_loss_coef", num(v.balance_losses ? moe.z_loss_coef() : 0.0));
    j.set("router_selection_bias", json::Value::boolean(v.selection_bias));
    j.set("capacity_factor", num(moe.capacity_factor()));
    j.set("hash_seed", json::Value::integer(moe.hash_seed()));
  }
  return json::serialize(j, 2) + "\n";
}

}  // namespace cmoe
