// model_test.cpp — routers against plain reimplementations, every model variant's gradients
// against finite differences, determinism, and learning on a synthetic task.
#include <cmath>

#include "moe/train/config.h"
#include "gtest/gtest.h"
#include "moe/model.h"
#include "moe/train/optimizer.h"
#include "moe/params.h"
#include "moe/router.h"
#include "tests/gradcheck.h"

namespace cmoe {
namespace {
using testing::random_tensor;

config::ModelConfig tiny_model(const std::string& kind_and_extra) {
  auto cfg = config_parse(absl::StrCat("model { vocab_size: 23 d_model: 8 n_layers: 2 n_heads: 2 ffn_hidden: 8 "
                                       "seq_len: 8 init_std: 0.3 moe { interval: 2 num_experts: 4 top_k: 2 ",
                                       kind_and_extra, " } }"),
                          "test");
  CMOE_CHECK(cfg.ok(), cfg.status().ToString());
  CMOE_CHECK(config_validate(*cfg).ok(), config_validate(*cfg).ToString());
  return cfg->model();
}

struct Batch {
  Tensor ids, targets;
};

Batch make_batch(int64_t B, int64_t T, int64_t V, uint64_t stream) {
  Batch b{Tensor::empty({B, T}, DType::kI32), Tensor::empty({B, T}, DType::kI32)};
  for (int64_t i = 0; i < B * T; ++i) {
    b.ids.data<int32_t>()[i] = static_cast<int32_t>(rng_u32(3, stream, i) % V);
    b.targets.data<int32_t>()[i] = static_cast<int32_t>(rng_u32(3, stream + 1, i) % V);
  }
  return b;
}

TEST(Router, TopKRenormalisesAndExcludesTop1OnRequest) {
  const int64_t N = 6, d = 5, E = 4;
  ag::Var u(random_tensor({N, d}, 1)), w(random_tensor({E, d}, 2));
  RouterOptions opt;
  opt.num_experts = E;
  opt.top_k = 2;
  RouterOutput r = route(u, w, Tensor(), opt, Tensor());
  opt.disable_top1 = true;
  RouterOutput r2 = route(u, w, Tensor(), opt, Tensor());
  // Reference: softmax of u w^T, sorted.
  for (int64_t n = 0; n < N; ++n) {
    std::vector<double> s(E);
    double mx = -1e30, z = 0;
    for (int64_t e = 0; e < E; ++e) {
      double l = 0;
      for (int64_t c = 0; c < d; ++c) l += double(u.value().data<float>()[n * d + c]) * w.value().data<float>()[e * d + c];
      s[e] = l;
      mx = std::max(mx, l);
    }
    for (double& v : s) z += (v = std::exp(v - mx));
    for (double& v : s) v /= z;
    std::vector<int> order = {0, 1, 2, 3};
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return s[a] > s[b]; });
    const int32_t* I = r.indices.data<int32_t>();
    EXPECT_EQ(I[n * 2], order[0]);
    EXPECT_EQ(I[n * 2 + 1], order[1]);
    const double tot = s[order[0]] + s[order[1]];
    EXPECT_NEAR(r.weights.value().data<float>()[n * 2], s[order[0]] / tot, 1e-5);
    // disable_top1: the 2nd and 3rd experts, renormalised over themselves.
    const int32_t* I2 = r2.indices.data<int32_t>();
    EXPECT_EQ(I2[n * 2], order[1]);
    EXPECT_EQ(I2[n * 2 + 1], order[2]);
    EXPECT_NEAR(r2.weights.value().data<float>()[n * 2 + 1], s[order[2]] / (s[order[1]] + s[order[2]]), 1e-5);
  }
}

TEST(Router, TopPKeepsUntilCumulativeExceedsP) {
  // Logits chosen so the sorted probabilities are known: p = softmax([ln 5, ln 3, ln 1, ln 1]) =
  // [0.5, 0.3, 0.1, 0.1]; top_p 0.4 keeps expert 0 only... 0.5 > 0.4 at the first. top_p 0.6
  // keeps 0 and 1 (0.8 > 0.6). Weights are the raw probabilities.
  const int64_t E = 4;
  ag::Var u(Tensor::from_floats({1, 1}, std::vector<float>{1}));
  ag::Var w(Tensor::from_floats({E, 1}, std::vector<float>{std::log(5.f), std::log(3.f), 0, 0}));
  RouterOptions opt;
  opt.kind = RouterKind::kTopP;
  opt.num_experts = E;
  opt.top_p = 0.6f;
  RouterOutput r = route(u, w, Tensor(), opt, Tensor());
  ASSERT_EQ(r.indices.dim(1), 2);
  EXPECT_EQ(r.indices.data<int32_t>()[0], 0);
  EXPECT_EQ(r.indices.data<int32_t>()[1], 1);
  EXPECT_NEAR(r.weights.value().data<float>()[0], 0.5, 1e-6);
  EXPECT_NEAR(r.weights.value().data<float>()[1], 0.3, 1e-6);
  opt.top_p = 0.4f;
  EXPECT_EQ(route(u, w, Tensor(), opt, Tensor()).indices.dim(1), 1);
}

TEST(Router, HashChoicesAreDistinctAndFixed) {
  for (int64_t tok = 0; tok < 200; ++tok) {
    int32_t a[3], b[3];
    hash_experts(a, tok, 3, 5, 9);
    hash_experts(b, tok, 3, 5, 9);
    EXPECT_TRUE(a[0] != a[1] && a[1] != a[2] && a[0] != a[2]);
    for (int j = 0; j < 3; ++j) {
      EXPECT_EQ(a[j], b[j]);
      EXPECT_TRUE(a[j] >= 0 && a[j] < 5);
    }
  }
}

TEST(Router, WeightsAndBalanceLossGradients) {
  const int64_t N = 7, d = 4, E = 5;
  for (float z : {0.0f, 0.1f}) {
    RouterOptions opt;
    opt.num_experts = E;
    opt.top_k = 3;
    opt.aux_coef = 0.5f;
    opt.z_coef = z;
    // The selection is piecewise constant; finite differences with a small step stay inside
    // one piece for these well-separated random logits.
    testing::GradCheckOptions gc;
    gc.eps = 1e-3f;
    std::string err = testing::grad_check(
        [&](const std::vector<ag::Var>& v) {
          RouterOutput r = route(v[0], v[1], Tensor(), opt, Tensor());
          return ag::add(ag::sum(r.weights), r.loss);
        },
        {random_tensor({N, d}, 11, 2.0f), random_tensor({E, d}, 12, 2.0f)}, {true, true}, gc);
    EXPECT_EQ(err, "") << "z_coef " << z;
  }
}

// Central finite differences of the whole model's loss for a sample of parameter elements.
void check_model_gradients(const config::ModelConfig& mc) {
  Model model(mc, 5);
  Batch b = make_batch(2, 5, mc.vocab_size(), 40);
  ForwardOptions fo;
  ForwardResult res = model.forward(b.ids, b.targets, fo);
  ag::backward(res.loss);
  ag::NoGradGuard ng;
  int checked = 0;
  for (Param& p : model.params()) {
    if (!p.var.grad().defined()) continue;
    float* w = p.var.mutable_value().data<float>();
    const int64_t n = p.var.value().numel();
    for (int64_t i = 0; i < n; i += std::max<int64_t>(1, n / 3)) {
      const float w0 = w[i], eps = 1e-2f;
      w[i] = w0 + eps;
      const double lp = model.forward(b.ids, b.targets, fo).loss.value().data<float>()[0];
      w[i] = w0 - eps;
      const double lm = model.forward(b.ids, b.targets, fo).loss.value().data<float>()[0];
      w[i] = w0;
      const double num = (lp - lm) / (2 * eps), got = p.var.grad().data<float>()[i];
      EXPECT_NEAR(got, num, 2e-3 + 3e-2 * std::abs(num)) << p.name << "[" << i << "]";
      ++checked;
    }
  }
  EXPECT_GT(checked, 20);
}

TEST(Model, GradientsAllVariants) {
  for (const char* kind : {"kind: DENSE", "kind: SMOE", "kind: SMOE shared_expert: false", "kind: FINE_GRAINED",
                           "kind: CARTESIAN", "kind: CARTESIAN shared_expert: false", "kind: HASH",
                           "kind: TOPP top_p: 0.5", "kind: CARTESIAN z_loss_coef: 0.01"}) {
    SCOPED_TRACE(kind);
    check_model_gradients(tiny_model(kind));
  }
}

TEST(Model, ParameterCountMatchesParamsAccounting) {
  for (const char* kind : {"kind: DENSE", "kind: SMOE", "kind: FINE_GRAINED", "kind: CARTESIAN", "kind: HASH"}) {
    config::ModelConfig mc = tiny_model(kind);
    Model model(mc, 1);
    int64_t n = 0;
    for (Param& p : model.params()) n += p.var.value().numel();
    EXPECT_EQ(n, count_params(mc).total) << kind;
  }
}

TEST(Model, SameSeedSameLossDifferentSeedDifferent) {
  config::ModelConfig mc = tiny_model("kind: CARTESIAN");
  Batch b = make_batch(2, 6, mc.vocab_size(), 7);
  Model a(mc, 11), c(mc, 11), d(mc, 12);
  const float la = a.forward(b.ids, b.targets, {}).loss.value().data<float>()[0];
  EXPECT_EQ(la, c.forward(b.ids, b.targets, {}).loss.value().data<float>()[0]);
  EXPECT_NE(la, d.forward(b.ids, b.targets, {}).loss.value().data<float>()[0]);
}

TEST(Model, Bf16CloseToF32) {
  config::ModelConfig mc = tiny_model("kind: CARTESIAN");
  Batch b = make_batch(2, 6, mc.vocab_size(), 9);
  Model m(mc, 3);
  ForwardOptions bf;
  bf.compute_dtype = DType::kBF16;
  const float f32 = m.forward(b.ids, b.targets, {}).loss.value().data<float>()[0];
  const float b16 = m.forward(b.ids, b.targets, bf).loss.value().data<float>()[0];
  EXPECT_NEAR(b16, f32, 2e-2 * std::abs(f32));  // bf16 inputs: 8-bit mantissa, f32 accumulation
}

TEST(Model, RecomputeGivesIdenticalGradients) {
  config::ModelConfig mc = tiny_model("kind: SMOE");
  Batch b = make_batch(2, 6, mc.vocab_size(), 21);
  Model m1(mc, 4), m2(mc, 4);
  ForwardOptions rc;
  rc.recompute_attention = true;
  ag::backward(m1.forward(b.ids, b.targets, {}).loss);
  ag::backward(m2.forward(b.ids, b.targets, rc).loss);
  for (size_t i = 0; i < m1.params().size(); ++i) {
    EXPECT_EQ(m1.params()[i].var.grad().to_floats(), m2.params()[i].var.grad().to_floats()) << m1.params()[i].name;
  }
}

// The training step's hint (loss_grad = the backward's seed) changes where the LM head's
// gradients are computed, not what they are.
TEST(Model, LossGradHintGivesIdenticalGradients) {
  config::ModelConfig mc = tiny_model("kind: CARTESIAN");
  Batch b = make_batch(2, 6, mc.vocab_size(), 23);
  for (DType dt : {DType::kF32, DType::kBF16}) {
    Model m1(mc, 4), m2(mc, 4);
    ForwardOptions plain, hinted;
    plain.compute_dtype = hinted.compute_dtype = dt;
    hinted.loss_grad = 0.5f;
    const Tensor seed = Tensor::full({}, 0.5f);
    ForwardResult r1 = m1.forward(b.ids, b.targets, plain), r2 = m2.forward(b.ids, b.targets, hinted);
    EXPECT_EQ(r1.loss.value().to_floats(), r2.loss.value().to_floats());
    ag::backward({r1.loss}, {seed});
    ag::backward({r2.loss}, {seed});
    for (size_t i = 0; i < m1.params().size(); ++i) {
      EXPECT_EQ(m1.params()[i].var.grad().to_floats(), m2.params()[i].var.grad().to_floats())
          << m1.params()[i].name << " " << dtype_name(dt);
    }
  }
}

TEST(Model, LearnsASyntheticSequence) {
  // Next token = (token + 1) mod V: learnable in a few dozen steps; loss must fall far below
  // the uniform log V.
  config::ModelConfig mc = tiny_model("kind: CARTESIAN");
  mc.set_init_std(0.02f);
  Model m(mc, 1);
  config::TrainConfig tc;
  tc.set_lr(1e-2f);
  tc.set_min_lr(1e-3f);
  tc.set_warmup_steps(5);
  tc.set_steps(80);
  AdamW opt(&m.params(), {0.9f, 0.95f, 1e-8f, 0.0f});
  float last = 0;
  for (int64_t step = 0; step < tc.steps(); ++step) {
    Batch b{Tensor::empty({4, 8}, DType::kI32), Tensor::empty({4, 8}, DType::kI32)};
    for (int64_t i = 0; i < 32; ++i) {
      int32_t t = static_cast<int32_t>(rng_u32(1, 77, step * 32 + i) % mc.vocab_size());
      b.ids.data<int32_t>()[i] = t;
      b.targets.data<int32_t>()[i] = (t + 1) % mc.vocab_size();
    }
    ForwardResult r = m.forward(b.ids, b.targets, {});
    ag::backward(r.loss);
    opt.step(lr_at(step, tc));
    for (Param& p : m.params()) p.var.zero_grad();
    last = static_cast<float>(r.ce);
  }
  EXPECT_LT(last, 0.25 * std::log(23.0));
}

// AdamW against the update written plainly in double: sizes cover the 16-lane body, the scalar
// tail and several parallel chunks; decay on/off, grad scaling, and three steps so the bias
// corrections and moments carry over. A param without a grad is left untouched.
TEST(Optimizer, AdamWMatchesPlainFormula) {
  const AdamWOptions o{0.9f, 0.95f, 1e-8f, 0.1f};
  const std::vector<int64_t> sizes = {5, 37, 70001};
  std::vector<Param> params;
  const char* names[] = {"a", "b", "c"};
  for (size_t i = 0; i < sizes.size(); ++i) {
    Param p;
    p.name = names[i];
    p.decay = i != 1;
    p.var = ag::Var(Tensor::empty({sizes[i]}, DType::kF32), true);
    rng_fill_normal(p.var.mutable_value(), 0.0f, 1.0f, 11, i);
    params.push_back(p);
  }
  Param frozen{"frozen", ag::Var(Tensor::full({3}, 2.0f), true)};
  params.push_back(frozen);
  std::vector<std::vector<double>> ref_p(sizes.size()), ref_m(sizes.size()), ref_v(sizes.size());
  for (size_t i = 0; i < sizes.size(); ++i) {
    const float* v = params[i].var.value().data<float>();
    ref_p[i].assign(v, v + sizes[i]);
    ref_m[i].assign(sizes[i], 0.0);
    ref_v[i].assign(sizes[i], 0.0);
  }
  AdamW opt(&params, o);
  const float lr = 0.01f, gs = 0.5f;
  for (int t = 1; t <= 3; ++t) {
    for (size_t i = 0; i < sizes.size(); ++i) {
      Tensor g = Tensor::empty({sizes[i]}, DType::kF32);
      rng_fill_normal(g, 0.0f, 1.0f, 100 + t, i);
      params[i].var.set_grad(g);
      const double bc1 = 1.0 - std::pow(0.9, t), bc2 = 1.0 - std::pow(0.95, t);
      for (int64_t j = 0; j < sizes[i]; ++j) {
        const double gj = static_cast<double>(g.data<float>()[j]) * gs;
        ref_m[i][j] = 0.9 * ref_m[i][j] + 0.1 * gj;
        ref_v[i][j] = 0.95 * ref_v[i][j] + 0.05 * gj * gj;
        const double decayed = ref_p[i][j] * (params[i].decay ? 1.0 - lr * 0.1 : 1.0);
        ref_p[i][j] = decayed - lr / bc1 * ref_m[i][j] / (std::sqrt(ref_v[i][j] / bc2) + 1e-8);
      }
    }
    opt.step(lr, gs);
  }
  for (size_t i = 0; i < sizes.size(); ++i) {
    const float* v = params[i].var.value().data<float>();
    for (int64_t j = 0; j < sizes[i]; ++j)
      ASSERT_NEAR(v[j], ref_p[i][j], 1e-5 * (1.0 + std::abs(ref_p[i][j]))) << "param " << i << " at " << j;
  }
  for (int j = 0; j < 3; ++j) EXPECT_EQ(params.back().var.value().data<float>()[j], 2.0f);
}

// grad_global_norm against a plain double sum over sizes with vector tails.
TEST(Optimizer, GradGlobalNormMatchesPlainSum) {
  std::vector<Param> params;
  double ref = 0;
  for (int64_t n : {3, 33, 70001}) {
    Param p{"p", ag::Var(Tensor::empty({n}, DType::kF32), true)};
    Tensor g = Tensor::empty({n}, DType::kF32);
    rng_fill_normal(g, 0.0f, 1.0f, 7, static_cast<uint64_t>(n));
    for (int64_t j = 0; j < n; ++j) ref += static_cast<double>(g.data<float>()[j]) * g.data<float>()[j];
    p.var.set_grad(g);
    params.push_back(p);
  }
  EXPECT_NEAR(grad_global_norm(params), std::sqrt(ref), 1e-9 * std::sqrt(ref));
}

}  // namespace
}  // namespace cmoe
