// variant_test.cpp — every FFN variant resolves to the expert sets, sizes and router the paper
// describes, and the parameter list the config implies (param_specs) is exactly the one the
// model allocates, on one rank and as expert-parallel slices.
#include <gtest/gtest.h>

#include "moe/model.h"
#include "moe/params.h"
#include "moe/train/config.h"
#include "moe/variant.h"

namespace cmoe {
namespace {

config::ModelConfig model_of(const std::string& moe) {
  auto cfg = config_parse("model { vocab_size: 31 d_model: 8 n_layers: 3 n_heads: 2 ffn_hidden: 12 moe { interval: 2 " +
                              moe + " num_experts: 4 top_k: 2 } }",
                          "test");
  CMOE_CHECK(cfg.ok(), cfg.status().message());
  CMOE_CHECK(config_validate(*cfg).ok(), config_validate(*cfg).message());
  return cfg->model();
}

TEST(Variant, EachKindResolvesAsThePaperDescribes) {
  struct Want {
    const char* moe;
    const char* name;
    size_t sets;
    int64_t experts, top_k, hidden, shared, shared_hidden;
    RouterKind router;
  };
  const Want wants[] = {
      {"kind: DENSE", "dense", 0, 0, 0, 0, 0, 0, RouterKind::kTopK},
      {"kind: SMOE", "smoe", 1, 4, 2, 12, 1, 12, RouterKind::kTopK},
      {"kind: SMOE shared_expert: false", "smoe", 1, 4, 2, 12, 0, 12, RouterKind::kTopK},
      {"kind: FINE_GRAINED", "fine_grained", 1, 8, 4, 6, 2, 6, RouterKind::kTopK},
      {"kind: CARTESIAN", "cartesian", 2, 4, 2, 6, 1, 6, RouterKind::kTopK},
      {"kind: HASH", "hash", 1, 4, 2, 12, 1, 12, RouterKind::kHash},
      {"kind: TOPP", "topp", 1, 4, 2, 12, 1, 12, RouterKind::kTopP},
      {"kind: SMOE expert_hidden: 15", "smoe", 1, 4, 2, 15, 1, 12, RouterKind::kTopK},
  };
  for (const Want& w : wants) {
    SCOPED_TRACE(w.moe);
    const MoeVariant v = resolve_variant(model_of(w.moe));
    EXPECT_EQ(v.name, w.name);
    EXPECT_EQ(v.routed, w.sets > 0);
    ASSERT_EQ(v.sets.size(), w.sets);
    if (w.sets == 0) continue;
    EXPECT_EQ(v.num_experts, w.experts);
    EXPECT_EQ(v.top_k, w.top_k);
    EXPECT_EQ(v.expert_hidden, w.hidden);
    EXPECT_EQ(v.num_shared, w.shared);
    EXPECT_EQ(v.shared_hidden, w.shared_hidden);
    EXPECT_EQ(v.router, w.router);
    EXPECT_EQ(v.learned_router, w.router != RouterKind::kHash);
    EXPECT_EQ(v.balance_losses, w.router != RouterKind::kHash);
    EXPECT_TRUE(v.is_moe_layer(0));
    EXPECT_FALSE(v.is_moe_layer(1));
    EXPECT_TRUE(v.is_moe_layer(2));
  }
  const MoeVariant c = resolve_variant(model_of("kind: CARTESIAN"));
  EXPECT_EQ(c.sets[0].name, "moeA");
  EXPECT_FALSE(c.sets[0].own_norm);
  EXPECT_EQ(c.sets[1].name, "moeB");
  EXPECT_TRUE(c.sets[1].own_norm);  // RMSNorm_B before sub-layer B
  EXPECT_EQ(c.sets[1].export_suffix, "1");
  EXPECT_TRUE(resolve_variant(model_of("kind: SMOE aux_free_bias: true")).selection_bias);
  EXPECT_FALSE(resolve_variant(model_of("kind: HASH aux_free_bias: true")).selection_bias);
}

TEST(Variant, ValidationNamesTheFields) {
  config::ModelConfig m = model_of("kind: CARTESIAN");
  m.set_ffn_hidden(13);
  EXPECT_NE(std::string(validate_model_config(m).message()).find("model.ffn_hidden = 13 must be even"), std::string::npos);
  m = model_of("kind: FINE_GRAINED");
  m.mutable_moe()->set_top_k(5);  // 2k = 10 of 2N = 8
  EXPECT_NE(std::string(validate_model_config(m).message()).find("selects 10 of only 8 experts"), std::string::npos);
}

TEST(ParamSpecs, EqualTheModelsParametersForEveryVariantAndShard) {
  for (const char* moe : {"kind: DENSE", "kind: SMOE", "kind: FINE_GRAINED", "kind: CARTESIAN", "kind: HASH",
                          "kind: TOPP", "kind: CARTESIAN shared_expert: false aux_free_bias: true",
                          "kind: CARTESIAN expert_hidden: 5"}) {
    SCOPED_TRACE(moe);
    const config::ModelConfig m = model_of(moe);
    for (const ModelShard& shard : {ModelShard{}, pipeline_shard(3, 2, 0, 2, 1), pipeline_shard(3, 2, 1, 2, 0)}) {
      if (!resolve_variant(m).routed && shard.ep > 1) continue;
      Model model(m, 7, shard, false);
      const std::vector<ParamSpec> specs = param_specs(m, shard);
      ASSERT_EQ(specs.size(), model.params().size());
      for (size_t i = 0; i < specs.size(); ++i) {
        const Param& p = model.params()[i];
        EXPECT_EQ(specs[i].name, p.name);
        EXPECT_EQ(specs[i].shape, p.var.shape()) << p.name;
        EXPECT_EQ(specs[i].sliced, p.expert) << p.name;
        EXPECT_EQ(specs[i].decay, p.decay) << p.name;
        if (p.expert) {
          EXPECT_EQ(specs[i].row0, p.row0) << p.name;
        }
      }
      const std::vector<ParamSpec> biases = router_bias_specs(m, shard);
      ASSERT_EQ(biases.size(), model.router_biases().size());
      for (size_t i = 0; i < biases.size(); ++i) EXPECT_EQ(biases[i].name, model.router_biases()[i].name);
    }
    // The whole model's specs count what count_params counts.
    int64_t n = 0;
    for (const ParamSpec& s : param_specs(m)) n += s.shape.numel();
    EXPECT_EQ(n, count_params(m).total);
  }
}

}  // namespace
}  // namespace cmoe
