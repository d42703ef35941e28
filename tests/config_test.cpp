// config_test.cpp — config parsing, --set overrides, validation messages, and parameter counts
// of the paper configs against the paper's table (Su et al. 2025).
#include <cmath>
#include <fstream>

#include "moe/train/config.h"
#include "gtest/gtest.h"
#include "moe/params.h"

namespace cmoe {
namespace {

std::string msg(const absl::Status& s) { return std::string(s.message()); }

TEST(Config, DefaultsAndOverrides) {
  auto cfg = config_parse("model { d_model: 128 }", "inline");
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  EXPECT_EQ(cfg->model().d_model(), 128);
  EXPECT_EQ(cfg->model().n_heads(), 8);  // default
  ASSERT_TRUE(config_set(*cfg, "train.steps=77").ok());
  ASSERT_TRUE(config_set(*cfg, "train.precision=bf16").ok());
  ASSERT_TRUE(config_set(*cfg, "model.moe.kind=smoe").ok());
  ASSERT_TRUE(config_set(*cfg, "checkpoint.interval=5").ok());
  ASSERT_TRUE(config_set(*cfg, "parallel.ep=2").ok());
  EXPECT_EQ(cfg->train().steps(), 77);
  EXPECT_EQ(cfg->train().precision(), "bf16");
  EXPECT_EQ(cfg->model().moe().kind(), config::SMOE);
  EXPECT_EQ(cfg->checkpoint().interval(), 5);
  // The resolved text round-trips, defaults included.
  std::string text = config_to_text(*cfg);
  EXPECT_NE(text.find("n_heads: 8"), std::string::npos);
  auto again = config_parse(text, "resolved");
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->SerializeAsString(), [&] {
    auto full = config_parse(config_to_text(*again), "x");
    return full->SerializeAsString();
  }());
}

TEST(Config, ParseErrorsNameFileLineAndField) {
  auto bad = config_parse("model {\n  d_modle: 3\n}\n", "my.textproto");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(msg(bad.status()).find("my.textproto:2:"), std::string::npos) << bad.status();
  EXPECT_NE(msg(bad.status()).find("d_modle"), std::string::npos) << bad.status();
}

TEST(Config, SetErrorsNamePathAndChoices) {
  RunConfig cfg;
  absl::Status s = config_set(cfg, "train.stepz=3");
  EXPECT_NE(msg(s).find("unknown field 'train.stepz'"), std::string::npos) << s;
  EXPECT_NE(msg(s).find("steps"), std::string::npos) << s;  // lists valid fields
  s = config_set(cfg, "train.steps=ten");
  EXPECT_NE(msg(s).find("expected a 64-bit integer"), std::string::npos) << s;
  s = config_set(cfg, "model.moe.kind=banana");
  EXPECT_NE(msg(s).find("cartesian"), std::string::npos) << s;
  s = config_set(cfg, "model=3");
  EXPECT_NE(msg(s).find("is a section"), std::string::npos) << s;
  s = config_set(cfg, "nonsense");
  EXPECT_FALSE(s.ok());
}

TEST(Config, ValidationNamesFieldAndRange) {
  RunConfig cfg;
  cfg.mutable_model()->set_n_heads(0);
  absl::Status s = config_validate(cfg);
  EXPECT_NE(msg(s).find("model.n_heads = 0 is out of range; allowed [1, 4096]"), std::string::npos) << s;
  cfg = RunConfig();
  cfg.mutable_model()->set_n_heads(3);
  EXPECT_NE(msg(config_validate(cfg)).find("must divide model.d_model"), std::string::npos);
  cfg = RunConfig();
  cfg.mutable_train()->set_precision("fp16");
  EXPECT_NE(msg(config_validate(cfg)).find("train.precision"), std::string::npos);
  cfg = RunConfig();
  cfg.mutable_parallel()->set_dp(2);
  cfg.mutable_parallel()->set_ep(4);
  EXPECT_NE(msg(config_validate(cfg)).find("parallel.ep = 4 must divide parallel.dp = 2"), std::string::npos);
  cfg = RunConfig();
  cfg.mutable_model()->mutable_moe()->set_top_k(17);
  EXPECT_NE(msg(config_validate(cfg)).find("model.moe.top_k"), std::string::npos);
  EXPECT_TRUE(config_validate(RunConfig()).ok());
}

TEST(Config, RangeErrorsPrintIntegersExactly) {
  RunConfig cfg;
  cfg.mutable_model()->set_vocab_size(2147483647);
  absl::Status s = config_validate(cfg);
  EXPECT_NE(msg(s).find("model.vocab_size = 2147483647 is out of range; allowed [2, 1073741824]"), std::string::npos)
      << s;
  cfg = RunConfig();
  cfg.mutable_train()->set_lr(20);
  EXPECT_NE(msg(config_validate(cfg)).find("train.lr = 20 is out of range; allowed [1e-12, 10]"), std::string::npos);
}

TEST(Config, ErrorsSayWhetherTheValueCameFromSetOrTheFile) {
  const std::string file = ::testing::TempDir() + "/set_attribution.textproto";
  {
    std::ofstream out(file);
    out << "model { n_heads: 3 d_model: 64 }\n";
  }
  // The bad value is in the file: the file is named.
  auto cfg = config_load(file, {});
  ASSERT_FALSE(cfg.ok());
  EXPECT_EQ(msg(cfg.status()).rfind(file + ": config: model.n_heads = 3 must divide", 0), 0u) << cfg.status();
  // The bad value came from --set: the override is named, not the file's content.
  cfg = config_load(file, {"model.n_heads=4", "train.steps=0"});
  ASSERT_FALSE(cfg.ok());
  EXPECT_EQ(msg(cfg.status()).rfind("--set train.steps=0 (on " + file + "): config: train.steps = 0 is out of range", 0),
            0u)
      << cfg.status();
  // A cross-field rule between a --set value and the file's names the override.
  cfg = config_load(file, {"model.n_heads=5"});
  ASSERT_FALSE(cfg.ok());
  EXPECT_NE(msg(cfg.status()).find("--set model.n_heads=5 (on "), std::string::npos) << cfg.status();
  // A field name that merely contains the set one's name is not blamed on it.
  cfg = config_load(file, {"model.n_heads=4", "train.lr=0.001", "train.min_lr=0.5"});
  ASSERT_FALSE(cfg.ok());
  EXPECT_NE(msg(cfg.status()).find("--set train.lr=0.001, --set train.min_lr=0.5"), std::string::npos) << cfg.status();
}

TEST(Config, LayoutRulesLiveInOnePlace) {
  RunConfig cfg;
  cfg.mutable_model()->mutable_moe()->set_kind(config::DENSE);
  EXPECT_NE(msg(config_validate_layout(cfg, {1, 2, 2})).find("parallel.ep = 2 needs an MoE model"), std::string::npos);
  cfg = RunConfig();
  EXPECT_NE(msg(config_validate_layout(cfg, {1, 6, 3})).find("must divide the 16 experts"), std::string::npos);
  EXPECT_NE(msg(config_validate_layout(cfg, {7, 1, 1})).find("parallel.pp = 7 exceeds model.n_layers = 6"),
            std::string::npos);
  cfg.mutable_model()->mutable_moe()->set_capacity_factor(1.25f);
  EXPECT_NE(msg(config_validate_layout(cfg, {1, 2, 2})).find("expert parallelism is dropless"), std::string::npos);
  EXPECT_TRUE(config_validate_layout(cfg, {2, 2, 1}).ok());
  EXPECT_EQ(precision_dtype("bf16").value(), DType::kBF16);
  EXPECT_NE(msg(precision_dtype("fp8").status()).find("train.precision = \"fp8\""), std::string::npos);
}

TEST(Config, LoadReportsMissingFile) {
  auto cfg = config_load("/nonexistent/x.textproto", {});
  ASSERT_FALSE(cfg.ok());
  EXPECT_NE(msg(cfg.status()).find("/nonexistent/x.textproto"), std::string::npos);
}

struct PaperRow {
  const char* file;
  double total_m, activated_m;
};

TEST(Params, PaperConfigsReproduceThePaperCounts) {
  // Su et al. 2025: MoE-Base 842M total / 247M activated for SMoE-Share, Fine-grained and
  // CartesianMoE; Dense-Base 162M; MoE-Large 2.88B / 770M; Dense-Large 468M; SMoE-Top3 258M /
  // 808M activated (with D' = D(N+1)/N in the dense layers too). Within 0.5%.
  const PaperRow rows[] = {
      {"paper/moe-base-smoe-share", 842, 247},   {"paper/moe-base-fine-grained", 842, 247},
      {"paper/moe-base-cartesian", 842, 247},    {"paper/moe-base-dense", 162, 162},
      {"paper/moe-large-smoe-share", 2880, 770}, {"paper/moe-large-fine-grained", 2880, 770},
      {"paper/moe-large-cartesian", 2880, 770},  {"paper/moe-large-dense", 468, 468},
      {"paper/moe-base-smoe-top3", 842, 258},    {"paper/moe-large-smoe-top3", 2880, 808},
  };
  for (const PaperRow& r : rows) {
    auto cfg = config_load(std::string(CMOE_SOURCE_DIR "/configs/") + r.file + ".textproto", {});
    ASSERT_TRUE(cfg.ok()) << cfg.status();
    ParamCounts pc = count_params(cfg->model());
    EXPECT_NEAR(pc.total / 1e6, r.total_m, 0.005 * r.total_m) << r.file;
    EXPECT_NEAR(pc.activated / 1e6, r.activated_m, 0.005 * r.activated_m) << r.file;
  }
}

TEST(Params, ComponentsAddUpAndCartesianCountsBothSubLayers) {
  auto cfg = config_parse("model { vocab_size: 10 d_model: 4 n_layers: 2 n_heads: 2 ffn_hidden: 8 "
                          "moe { kind: CARTESIAN interval: 2 num_experts: 3 top_k: 2 } }", "x");
  ASSERT_TRUE(cfg.ok());
  ParamCounts pc = count_params(cfg->model());
  int64_t total = 0;
  for (auto& c : pc.components) total += c.total;
  EXPECT_EQ(total, pc.total);
  // Layer 0 is Cartesian: 2 routers (4x3), 2x3 sub-experts of 3*4*4, 2 shared (3*4*4) + 2 gates (4*2+2).
  // Layer 1 dense: 3*4*8. Attention 2 * 4*4*4. Norms: 4 final + 2*2*4 + 4 (RMSNorm_B).
  const int64_t expect = 10 * 4 * 2 + 2 * 64 + (4 + 16 + 4) + 96 + 2 * 12 + 6 * 48 + 2 * (48 + 10);
  EXPECT_EQ(pc.total, expect);
  EXPECT_EQ(pc.activated, expect - 2 * 48);  // 2 of 3 sub-experts active in each sub-layer
}

}  // namespace
}  // namespace cmoe
