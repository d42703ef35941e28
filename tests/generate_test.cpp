// generate_test.cpp — inference over a key/value cache against the training forward, for every
// variant: the cached logits at each position equal the whole-sequence forward's logits and give
// each position's cross-entropy as Model::forward computes it; greedy generation equals
// re-running the full forward on the growing sequence and taking the argmax. Also the
// next-token rules (greedy, temperature, top-k, top-p, seeded draws) and the stop conditions.
#include <algorithm>
#include <cmath>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/rng.h"
#include "gtest/gtest.h"
#include "moe/generate.h"
#include "moe/model.h"
#include "moe/train/config.h"

namespace cmoe {
namespace {

constexpr int64_t kVocab = 61, kSeqLen = 24;

config::ModelConfig test_model(const std::string& moe) {
  auto cfg = config_parse(absl::StrCat("model { vocab_size: ", kVocab, " d_model: 16 n_layers: 3 n_heads: 2 ",
                                       "ffn_hidden: 16 seq_len: ", kSeqLen, " init_std: 0.3 moe { interval: 2 ",
                                       "num_experts: 4 top_k: 2 ", moe, " } }"),
                          "test");
  CMOE_CHECK(cfg.ok(), cfg.status().ToString());
  CMOE_CHECK(config_validate(*cfg).ok(), config_validate(*cfg).ToString());
  return cfg->model();
}

// Every variant, and a capacity factor (inference is dropless, like the forward it is compared
// with when that forward is told to be).
const std::vector<std::string> kVariants = {
    "kind: DENSE", "kind: SMOE", "kind: SMOE shared_expert: false", "kind: FINE_GRAINED", "kind: CARTESIAN",
    "kind: CARTESIAN shared_expert: false", "kind: HASH", "kind: TOPP top_p: 0.5", "kind: SMOE capacity_factor: 0.5"};

Tensor random_ids(int64_t B, int64_t T, uint64_t stream) {
  std::vector<int32_t> v(static_cast<size_t>(B * T));
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<int32_t>(rng_u32(5, stream, i) % kVocab);
  return Tensor::from_ints({B, T}, v);
}

// Columns [t0, t1) of a (B, T) id tensor.
Tensor columns(const Tensor& ids, int64_t t0, int64_t t1) {
  const int64_t B = ids.dim(0), T = ids.dim(1);
  std::vector<int32_t> v;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = t0; t < t1; ++t) v.push_back(ids.data<int32_t>()[b * T + t]);
  return Tensor::from_ints({B, t1 - t0}, v);
}

// Logits of every position through the cache: a prefill of 7, five single steps, then a chunk
// of the rest. Returns (B * T, V) rows in the order b * T + t.
std::vector<float> cached_logits(Model& model, const Tensor& ids, const ForwardOptions& opt) {
  const int64_t B = ids.dim(0), T = ids.dim(1);
  KvCache cache = model.kv_cache(B, kSeqLen);
  std::vector<float> out(static_cast<size_t>(B * T * kVocab));
  auto run = [&](int64_t t0, int64_t t1) {
    if (t1 <= t0) return;
    Tensor l = model.forward_cached(columns(ids, t0, t1), cache, opt, /*all_positions=*/true);
    EXPECT_EQ(l.shape(), Shape({B * (t1 - t0), kVocab}));
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = t0; t < t1; ++t)
        std::copy_n(l.data<float>() + (b * (t1 - t0) + t - t0) * kVocab, kVocab, out.data() + (b * T + t) * kVocab);
  };
  run(0, std::min<int64_t>(7, T));
  for (int64_t t = 7; t < std::min<int64_t>(12, T); ++t) run(t, t + 1);
  run(12, T);
  EXPECT_EQ(cache.length, T);
  return out;
}

TEST(Generate, CachedLogitsEqualFullForwardEveryVariant) {
  const int64_t B = 2, T = 20;
  const Tensor ids = random_ids(B, T, 1);
  for (const std::string& kind : kVariants) {
    SCOPED_TRACE(kind);
    Model model(test_model(kind), 7);
    for (bool disable_top1 : {false, true}) {
      if (disable_top1 && !variant_check_disable_top1(model.variant()).ok()) continue;
      SCOPED_TRACE(disable_top1 ? "disable_top1" : "all experts");
      ForwardOptions opt;
      opt.disable_top1 = disable_top1;
      const std::vector<float> full = model.logits(ids, opt).to_floats();
      const std::vector<float> cached = cached_logits(model, ids, opt);
      ASSERT_EQ(full.size(), cached.size());
      double worst = 0, scale = 0;
      for (size_t i = 0; i < full.size(); ++i) {
        worst = std::max(worst, std::abs(static_cast<double>(full[i]) - cached[i]));
        scale = std::max(scale, std::abs(static_cast<double>(full[i])));
      }
      EXPECT_GT(scale, 0.5);  // logits of some size, so the comparison means something
      EXPECT_LE(worst, 2e-5 * std::max(1.0, scale)) << "max |full - cached| " << worst << ", max |logit| " << scale;
    }
  }
}

TEST(Generate, CachedLogitsEqualFullForwardInBf16) {
  // train.precision bf16: the matmuls round their inputs to bf16 in both paths; the results
  // differ only by f32 accumulation order, amplified through later roundings.
  const Tensor ids = random_ids(2, 20, 6);
  Model model(test_model("kind: CARTESIAN"), 23);
  ForwardOptions opt;
  opt.compute_dtype = DType::kBF16;
  const std::vector<float> full = model.logits(ids, opt).to_floats(), cached = cached_logits(model, ids, opt);
  const std::vector<float> f32 = model.logits(ids, {}).to_floats();
  double worst = 0, scale = 0, vs_f32 = 0;
  for (size_t i = 0; i < full.size(); ++i) {
    worst = std::max(worst, std::abs(static_cast<double>(full[i]) - cached[i]));
    vs_f32 = std::max(vs_f32, std::abs(static_cast<double>(full[i]) - f32[i]));
    scale = std::max(scale, std::abs(static_cast<double>(full[i])));
  }
  EXPECT_GT(vs_f32, 0.0);  // bf16 really was used
  EXPECT_LE(worst, 2e-2 * scale) << "max |full - cached| " << worst << ", max |logit| " << scale;
}

TEST(Generate, CachedLogitsGiveTheTrainingForwardsCrossEntropy) {
  // Model::forward's loss path (the fused chunked cross-entropy) at one target at a time equals
  // lse(z) - z[target] of the cached logits at that position.
  const int64_t B = 2, T = 12;
  const Tensor ids = random_ids(B, T, 2), targets_all = random_ids(B, T, 3);
  for (const std::string& kind : {std::string("kind: CARTESIAN"), std::string("kind: TOPP top_p: 0.5"),
                                  std::string("kind: HASH"), std::string("kind: SMOE capacity_factor: 0.5")}) {
    SCOPED_TRACE(kind);
    Model model(test_model(kind), 11);
    ForwardOptions opt;
    opt.dropless = true;
    const std::vector<float> z = cached_logits(model, ids, opt);
    ag::NoGradGuard no_grad;
    for (int64_t n = 0; n < B * T; ++n) {
      std::vector<int32_t> tv(static_cast<size_t>(B * T), -1);
      const int32_t target = targets_all.data<int32_t>()[n];
      tv[n] = target;
      ForwardResult f = model.forward(ids, Tensor::from_ints({B, T}, tv), opt);
      ASSERT_EQ(f.global_tokens, 1);
      const float* row = z.data() + n * kVocab;
      const double m = *std::max_element(row, row + kVocab);
      double s = 0;
      for (int64_t v = 0; v < kVocab; ++v) s += std::exp(row[v] - m);
      const double ce = m + std::log(s) - row[target];
      EXPECT_NEAR(f.ce, ce, 2e-5 * std::max(1.0, ce)) << "position " << n;
    }
  }
}

TEST(Generate, GreedyEqualsStepwiseFullForwardArgmax) {
  const Tensor prompt_t = random_ids(1, 5, 4);
  const std::vector<int32_t> prompt(prompt_t.data<int32_t>(), prompt_t.data<int32_t>() + 5);
  for (const std::string& kind : kVariants) {
    SCOPED_TRACE(kind);
    Model model(test_model(kind), 13);
    GenerateOptions opt;
    opt.max_new_tokens = 14;
    opt.sampling.temperature = 0;
    auto r = generate(model, prompt, opt);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->stop, StopReason::kMaxNewTokens);
    EXPECT_EQ(r->prompt_tokens, 5);
    EXPECT_EQ(r->decode_steps, 13);
    // The reference: the full forward on the whole growing sequence, argmax of its last row.
    std::vector<int32_t> seq = prompt, want;
    for (int i = 0; i < 14; ++i) {
      Tensor l = model.logits(Tensor::from_ints({1, static_cast<int64_t>(seq.size())}, seq), {});
      const float* last = l.data<float>() + (l.dim(0) - 1) * kVocab;
      const int32_t next = static_cast<int32_t>(std::max_element(last, last + kVocab) - last);
      want.push_back(next);
      seq.push_back(next);
    }
    EXPECT_EQ(r->tokens, want);
  }
}

TEST(Generate, StopsAtTheStopTokenTheLimitAndAFullContext) {
  Model model(test_model("kind: CARTESIAN"), 17);
  const Tensor p = random_ids(1, 20, 5);
  const std::vector<int32_t> prompt(p.data<int32_t>(), p.data<int32_t>() + 3);
  GenerateOptions opt;
  opt.sampling.temperature = 0;
  opt.max_new_tokens = 12;
  auto g = generate(model, prompt, opt);
  ASSERT_TRUE(g.ok());
  // Stop at the first token that did not occur before it: the output is the tokens before it.
  size_t j = 1;
  while (j < g->tokens.size() && std::count(g->tokens.begin(), g->tokens.begin() + j, g->tokens[j]) > 0) ++j;
  ASSERT_LT(j, g->tokens.size()) << "greedy output repeats one token";
  opt.stop_id = g->tokens[j];
  int streamed = 0;
  auto s = generate(model, prompt, opt, [&](int32_t) { ++streamed; });
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->stop, StopReason::kStopToken);
  EXPECT_EQ(s->tokens, std::vector<int32_t>(g->tokens.begin(), g->tokens.begin() + j));
  EXPECT_EQ(streamed, static_cast<int>(j));

  // A 20-token prompt in a 24-token context: new tokens at positions 20..24, the last not fed back.
  opt.stop_id = -1;
  opt.max_new_tokens = 100;
  const std::vector<int32_t> long_prompt(p.data<int32_t>(), p.data<int32_t>() + 20);
  auto c = generate(model, long_prompt, opt);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->stop, StopReason::kContextFull);
  EXPECT_EQ(c->tokens.size(), 5u);
  EXPECT_EQ(c->decode_steps, 4);
  std::vector<int32_t> full_prompt(static_cast<size_t>(kSeqLen), 3);
  auto one = generate(model, full_prompt, opt);
  ASSERT_TRUE(one.ok());
  EXPECT_EQ(one->tokens.size(), 1u);
  EXPECT_EQ(one->stop, StopReason::kContextFull);
  // Refused: an empty prompt, a prompt longer than the context, an id outside the vocabulary.
  EXPECT_FALSE(generate(model, std::vector<int32_t>{}, opt).ok());
  EXPECT_FALSE(generate(model, std::vector<int32_t>(kSeqLen + 1, 3), opt).ok());
  EXPECT_FALSE(generate(model, std::vector<int32_t>{1, kVocab}, opt).ok());
}

TEST(Generate, SeededDrawsAreReproducibleAndDifferAcrossSeedsAndStreams) {
  Model model(test_model("kind: SMOE"), 19);
  const std::vector<int32_t> prompt = {1, 2, 3};
  GenerateOptions opt;
  opt.max_new_tokens = 16;
  opt.sampling.temperature = 1.5f;
  opt.sampling.seed = 42;
  auto a = generate(model, prompt, opt), b = generate(model, prompt, opt);
  opt.sampling.seed = 43;
  auto c = generate(model, prompt, opt);
  opt.sampling.seed = 42;
  opt.stream = generate_stream(1);
  auto d = generate(model, prompt, opt);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok() && d.ok());
  EXPECT_EQ(a->tokens, b->tokens);
  EXPECT_NE(a->tokens, c->tokens);
  EXPECT_NE(a->tokens, d->tokens);
}

// ---- The next-token rule ----

TEST(Sampling, GreedyTopKOneAndVocabLimit) {
  const std::vector<float> z = {0.5f, 2.0f, -1.0f, 2.0f, 1.0f};
  SamplingOptions g;
  g.temperature = 0;
  EXPECT_EQ(sample_token(z, g, 0.99f), 1);  // the first of two maxima
  EXPECT_EQ(sample_token(z, g, 0.5f, /*vocab_limit=*/1), 0);
  SamplingOptions k1;
  k1.top_k = 1;
  for (float u : {0.01f, 0.5f, 0.99f}) EXPECT_EQ(sample_token(z, k1, u), 1);
  SamplingOptions t;
  for (float u : {0.01f, 0.5f, 0.99f}) EXPECT_LT(sample_token(z, t, u, 3), 3);
}

TEST(Sampling, InverseCdfOverSortedProbabilities) {
  // p = (0.5, 0.25, 0.125, 0.125) at ids (2, 0, 3, 1): ordered by probability, ties by id.
  const std::vector<float> z = {std::log(0.25f), std::log(0.125f), std::log(0.5f), std::log(0.125f)};
  SamplingOptions s;
  EXPECT_EQ(sample_token(z, s, 0.1f), 2);
  EXPECT_EQ(sample_token(z, s, 0.6f), 0);
  EXPECT_EQ(sample_token(z, s, 0.8f), 1);
  EXPECT_EQ(sample_token(z, s, 0.9f), 3);
  s.top_k = 2;  // (2/3, 1/3) over ids 2, 0
  EXPECT_EQ(sample_token(z, s, 0.6f), 2);
  EXPECT_EQ(sample_token(z, s, 0.7f), 0);
  s.top_k = 0;
  s.top_p = 0.7f;  // 0.5 < 0.7 <= 0.75: ids 2, 0, as with top_k 2
  EXPECT_EQ(sample_token(z, s, 0.6f), 2);
  EXPECT_EQ(sample_token(z, s, 0.7f), 0);
  EXPECT_EQ(sample_token(z, s, 0.99f), 0);
  s.top_p = 0.5f;  // reached by the first id alone
  EXPECT_EQ(sample_token(z, s, 0.99f), 2);
}

TEST(Sampling, FrequenciesFollowTheTemperedDistribution) {
  const std::vector<float> z = {std::log(0.5f), std::log(0.25f), std::log(0.125f), std::log(0.125f)};
  const int n = 40000;
  auto freq = [&](const SamplingOptions& s) {
    std::vector<double> f(4, 0.0);
    for (int i = 0; i < n; ++i) f[sample_token(z, s, rng_uniform(s.seed, 9, static_cast<uint64_t>(i)))] += 1.0 / n;
    return f;
  };
  SamplingOptions s;
  s.seed = 5;
  std::vector<double> f = freq(s);
  const double want1[] = {0.5, 0.25, 0.125, 0.125};
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(f[i], want1[i], 0.01) << "T = 1, id " << i;
  s.temperature = 2;  // p ~ sqrt(p): (0.7071, 0.5, 0.3536, 0.3536) / 1.9142
  f = freq(s);
  const double want2[] = {0.3694, 0.2612, 0.1847, 0.1847};
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(f[i], want2[i], 0.01) << "T = 2, id " << i;
  s.temperature = 1;
  s.top_k = 2;
  f = freq(s);
  EXPECT_NEAR(f[0], 2.0 / 3, 0.01);
  EXPECT_NEAR(f[1], 1.0 / 3, 0.01);
  EXPECT_EQ(f[2] + f[3], 0.0);
}

TEST(Sampling, ValidateNamesTheField) {
  auto bad = [](float t, int64_t k, float p) {
    SamplingOptions s;
    s.temperature = t;
    s.top_k = k;
    s.top_p = p;
    return sampling_validate(s);
  };
  EXPECT_TRUE(bad(0, 0, 1).ok());
  EXPECT_TRUE(bad(0.7f, 40, 0.9f).ok());
  EXPECT_NE(bad(-1, 0, 1).message().find("temperature"), std::string::npos);
  EXPECT_FALSE(bad(std::nanf(""), 0, 1).ok());
  EXPECT_FALSE(bad(INFINITY, 0, 1).ok());
  EXPECT_NE(bad(1, -1, 1).message().find("top_k"), std::string::npos);
  EXPECT_NE(bad(1, 0, 0).message().find("top_p"), std::string::npos);
  EXPECT_FALSE(bad(1, 0, 1.5f).ok());
  EXPECT_FALSE(bad(1, 0, std::nanf("")).ok());
}

TEST(Generate, DisableTop1IsRefusedWithoutALearnedRouter) {
  for (const char* kind : {"kind: DENSE", "kind: HASH"}) {
    absl::Status s = variant_check_disable_top1(resolve_variant(test_model(kind)));
    EXPECT_FALSE(s.ok()) << kind;
    EXPECT_NE(s.message().find("no top-1 expert"), std::string::npos) << s;
  }
  for (const char* kind : {"kind: SMOE", "kind: TOPP", "kind: CARTESIAN", "kind: FINE_GRAINED"})
    EXPECT_TRUE(variant_check_disable_top1(resolve_variant(test_model(kind))).ok()) << kind;
}

}  // namespace
}  // namespace cmoe
