// hf_export.cpp — the cmoe -> Hugging Face name mapping and config.json (see hf_export.h).
#include "moe/hf_export.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "moe/params.h"
#include "moe/router.h"

namespace cmoe {

namespace {

const char* kind_name(config::FfnKind k) {
  switch (k) {
    case config::DENSE: return "dense";
    case config::SMOE: return "smoe";
    case config::FINE_GRAINED: return "fine_grained";
    case config::CARTESIAN: return "cartesian";
    case config::HASH: return "hash";
    case config::TOPP: return "topp";
  }
  return "?";
}

// Routed experts and top-k per router, as the model builds them.
int64_t router_experts(const config::ModelConfig& m) {
  return m.moe().kind() == config::FINE_GRAINED ? 2 * m.moe().num_experts() : m.moe().num_experts();
}
int64_t router_top_k(const config::ModelConfig& m) {
  return m.moe().kind() == config::FINE_GRAINED ? 2 * m.moe().top_k() : m.moe().top_k();
}
int64_t shared_hidden(const config::ModelConfig& m) {
  const auto k = m.moe().kind();
  return k == config::CARTESIAN || k == config::FINE_GRAINED ? m.ffn_hidden() / 2 : m.ffn_hidden();
}
int shared_count(const config::ModelConfig& m) {
  if (!m.moe().shared_expert()) return 0;
  return m.moe().kind() == config::FINE_GRAINED ? 2 : 1;
}

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
  const int64_t V = m.vocab_size(), d = m.d_model(), D = m.ffn_hidden();
  const int64_t E = router_experts(m), K = router_top_k(m), F = expert_hidden_size(m), S = shared_hidden(m);
  const auto kind = m.moe().kind();
  std::vector<HfTensor> out;
  Mapper map(lookup, out);
  CMOE_RETURN_IF_ERROR(map.take("embed.weight", {V, d}, "model.embed_tokens.weight"));
  for (int l = 0; l < m.n_layers(); ++l) {
    const std::string src = absl::StrCat("layers.", l), dst = absl::StrCat("model.layers.", l);
    CMOE_RETURN_IF_ERROR(map.take(src + ".ln_in", {d}, dst + ".input_layernorm.weight"));
    for (const char* p : {"q", "k", "v", "o"})
      CMOE_RETURN_IF_ERROR(map.take(absl::StrCat(src, ".attn.w", p), {d, d}, absl::StrCat(dst, ".self_attn.", p, "_proj.weight")));
    CMOE_RETURN_IF_ERROR(map.take(src + ".ln_post", {d}, dst + ".post_attention_layernorm.weight"));
    if (!is_moe_layer(m, l)) {
      CMOE_RETURN_IF_ERROR(map.take(src + ".ffn.w1", {D, d}, dst + ".mlp.gate_proj.weight"));
      CMOE_RETURN_IF_ERROR(map.take(src + ".ffn.w3", {D, d}, dst + ".mlp.up_proj.weight"));
      CMOE_RETURN_IF_ERROR(map.take(src + ".ffn.w2", {d, D}, dst + ".mlp.down_proj.weight"));
      continue;
    }
    // (cmoe sub-layer, export suffix): one routed sub-layer, or Cartesian A and B.
    std::vector<std::pair<std::string, std::string>> subs;
    if (kind == config::CARTESIAN) {
      subs = {{src + ".moeA", "0"}, {src + ".moeB", "1"}};
    } else {
      subs = {{src + ".moe", ""}};
    }
    for (const auto& [s, x] : subs) {
      if (kind == config::CARTESIAN && x == "1")
        CMOE_RETURN_IF_ERROR(map.take(src + ".ln_b", {d}, dst + ".mlp_layernorm.weight"));
      if (kind != config::HASH) CMOE_RETURN_IF_ERROR(map.take(s + ".router", {E, d}, absl::StrCat(dst, ".wg", x, ".weight")));
      const std::string mlp = absl::StrCat(dst, ".mlp", x, ".");
      CMOE_RETURN_IF_ERROR(map.split(s + ".experts.w1", {E, F, d}, [&](int64_t e) { return absl::StrCat(mlp, e, ".gate_proj.weight"); }));
      CMOE_RETURN_IF_ERROR(map.split(s + ".experts.w3", {E, F, d}, [&](int64_t e) { return absl::StrCat(mlp, e, ".up_proj.weight"); }));
      CMOE_RETURN_IF_ERROR(map.split(s + ".experts.w2", {E, d, F}, [&](int64_t e) { return absl::StrCat(mlp, e, ".down_proj.weight"); }));
      const int n_shared = shared_count(m);
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
      if (opt.buffers && m.moe().aux_free_bias() && kind != config::HASH)
        CMOE_RETURN_IF_ERROR(map.take(s + ".bias", {E}, absl::StrCat(dst, ".wg", x, ".e_score_correction_bias")));
    }
    if (opt.buffers && kind == config::HASH) {
      // The fixed token -> experts table, so a loader needs no copy of cmoe's hash function.
      Tensor table = Tensor::empty({V, K}, DType::kI64);
      std::vector<int32_t> row(K);
      for (int64_t v = 0; v < V; ++v) {
        hash_experts(row.data(), v, K, E, static_cast<uint64_t>(m.moe().hash_seed()));
        for (int64_t j = 0; j < K; ++j) table.data<int64_t>()[v * K + j] = row[j];
      }
      out.push_back({dst + ".hash_table", table});
    }
  }
  CMOE_RETURN_IF_ERROR(map.take("norm.weight", {d}, "model.norm.weight"));
  CMOE_RETURN_IF_ERROR(map.take("lm_head.weight", {V, d}, "lm_head.weight"));
  return out;
}

std::string hf_config_json(const config::ModelConfig& m, const std::string& dtype) {
  const auto& moe = m.moe();
  const bool dense = moe.kind() == config::DENSE;
  std::vector<int> moe_layers;
  for (int l = 0; l < m.n_layers(); ++l)
    if (is_moe_layer(m, l)) moe_layers.push_back(l);
  std::string j = "{\n";
  auto kv = [&j](const std::string& k, const std::string& v) { absl::StrAppend(&j, j.size() > 2 ? ",\n" : "", "  \"", k, "\": ", v); };
  auto str = [](const std::string& s) { return absl::StrCat("\"", s, "\""); };
  auto num = [](double v) { return absl::StrFormat("%.9g", v); };
  // A dense export is a plain LLaMA checkpoint that transformers' LlamaForCausalLM loads as is.
  kv("architectures", dense ? "[\"LlamaForCausalLM\"]" : "[\"CmoeForCausalLM\"]");
  kv("model_type", str(dense ? "llama" : "cmoe"));
  kv("vocab_size", absl::StrCat(m.vocab_size()));
  kv("hidden_size", absl::StrCat(m.d_model()));
  kv("intermediate_size", absl::StrCat(m.ffn_hidden()));
  kv("num_hidden_layers", absl::StrCat(m.n_layers()));
  kv("num_attention_heads", absl::StrCat(m.n_heads()));
  kv("num_key_value_heads", absl::StrCat(m.n_heads()));
  kv("head_dim", absl::StrCat(m.d_model() / m.n_heads()));
  kv("max_position_embeddings", absl::StrCat(m.seq_len()));
  kv("rms_norm_eps", num(m.norm_eps()));
  kv("rope_theta", num(m.rope_theta()));
  kv("hidden_act", str("silu"));
  kv("attention_bias", "false");
  kv("tie_word_embeddings", "false");
  kv("initializer_range", num(m.init_std()));
  kv("torch_dtype", str(dtype));
  kv("moe_kind", str(kind_name(moe.kind())));
  if (!dense) {
    kv("moe_layers", absl::StrCat("[", absl::StrJoin(moe_layers, ", "), "]"));
    kv("moe_interval", absl::StrCat(moe.interval()));
    kv("num_experts", absl::StrCat(router_experts(m)));
    kv("num_experts_per_tok", absl::StrCat(router_top_k(m)));
    kv("moe_intermediate_size", absl::StrCat(expert_hidden_size(m)));
    kv("num_shared_experts", absl::StrCat(shared_count(m)));
    kv("shared_intermediate_size", absl::StrCat(shared_hidden(m)));
    kv("router_kind", str(moe.kind() == config::HASH ? "hash" : moe.kind() == config::TOPP ? "topp" : "topk"));
    kv("norm_topk_prob", moe.kind() != config::TOPP && moe.kind() != config::HASH && router_top_k(m) > 1 ? "true" : "false");
    kv("top_p", num(moe.top_p()));
    kv("router_aux_loss_coef", num(moe.kind() == config::HASH ? 0.0 : moe.aux_loss_coef()));
    kv("router_z_loss_coef", num(moe.kind() == config::HASH ? 0.0 : moe.z_loss_coef()));
    kv("router_selection_bias", moe.aux_free_bias() && moe.kind() != config::HASH ? "true" : "false");
    kv("capacity_factor", num(moe.capacity_factor()));
    kv("hash_seed", absl::StrCat(moe.hash_seed()));
  }
  j += "\n}\n";
  return j;
}

}  // namespace cmoe
