// moe_test.cpp — dropless dispatch against a naive dense reference that runs every expert on
// every token and masks, its gradients against finite differences, and the capacity rule.
#include <cmath>

#include "gtest/gtest.h"
#include "moe/dispatch.h"
#include "tests/gradcheck.h"

namespace cmoe {
namespace {
using testing::random_tensor;

// out[n] = sum_j w[n,j] * FFN_{idx[n,j]}(u[n]) in double, every expert computed for every token.
std::vector<double> naive_moe(const Tensor& u, const Tensor& idx, const Tensor& w, const Tensor& w1,
                              const Tensor& w3, const Tensor& w2) {
  const int64_t N = u.dim(0), d = u.dim(1), k = idx.dim(1), E = w1.dim(0), F = w1.dim(1);
  const float *U = u.data<float>(), *W = w.data<float>(), *A = w1.data<float>(), *B = w3.data<float>(),
              *C = w2.data<float>();
  const int32_t* I = idx.data<int32_t>();
  std::vector<double> out(N * d, 0.0);
  for (int64_t e = 0; e < E; ++e) {
    for (int64_t n = 0; n < N; ++n) {
      double mask = 0;
      for (int64_t j = 0; j < k; ++j) mask += I[n * k + j] == e ? W[n * k + j] : 0.0;
      std::vector<double> h(F);
      for (int64_t f = 0; f < F; ++f) {
        double g = 0, up = 0;
        for (int64_t c = 0; c < d; ++c) {
          g += double(A[(e * F + f) * d + c]) * U[n * d + c];
          up += double(B[(e * F + f) * d + c]) * U[n * d + c];
        }
        h[f] = g / (1 + std::exp(-g)) * up;
      }
      for (int64_t c = 0; c < d; ++c) {
        double y = 0;
        for (int64_t f = 0; f < F; ++f) y += double(C[(e * d + c) * F + f]) * h[f];
        out[n * d + c] += mask * y;
      }
    }
  }
  return out;
}

Tensor random_indices(int64_t N, int64_t k, int64_t E, uint64_t stream) {
  // k distinct experts per token, from the Philox stream.
  Tensor t = Tensor::empty({N, k}, DType::kI32);
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t j = 0; j < k; ++j) {
      int32_t e;
      bool dup;
      uint64_t draw = 0;
      do {
        e = static_cast<int32_t>(rng_u32(7, stream, n * 64 + draw++) % E);
        dup = false;
        for (int64_t i = 0; i < j; ++i) dup = dup || t.data<int32_t>()[n * k + i] == e;
      } while (dup);
      t.data<int32_t>()[n * k + j] = e;
    }
  }
  return t;
}

TEST(Dispatch, PlanSortsStablyByExpert) {
  std::vector<int32_t> ids = {2, 0, 1, 2, 0, 2};  // 3 tokens, k = 2
  DispatchPlan p = dispatch_plan(Tensor::from_ints({3, 2}, ids), 4);
  EXPECT_EQ(p.counts, (std::vector<int64_t>{2, 1, 3, 0}));
  EXPECT_EQ(*p.offsets, (std::vector<int64_t>{0, 2, 3, 6, 6}));
  std::vector<int32_t> tok(p.token_of_slot.data<int32_t>(), p.token_of_slot.data<int32_t>() + 6);
  std::vector<int32_t> pair(p.pair_of_slot.data<int32_t>(), p.pair_of_slot.data<int32_t>() + 6);
  EXPECT_EQ(tok, (std::vector<int32_t>{0, 2, 1, 0, 1, 2}));
  EXPECT_EQ(pair, (std::vector<int32_t>{1, 4, 2, 0, 3, 5}));
  EXPECT_EQ(p.dropped, 0);
}

TEST(Dispatch, CapacityDropsLatePairsInTokenOrder) {
  std::vector<int32_t> ids = {0, 1, 0, 1, 0, 1, 0, 2};  // expert 0 chosen 4 times
  // capacity = ceil(1.0 * 8 / 4) = 2 per expert: expert 0 keeps tokens 0 and 1 only.
  DispatchPlan p = dispatch_plan(Tensor::from_ints({4, 2}, ids), 4, 1.0f);
  EXPECT_EQ(p.counts, (std::vector<int64_t>{2, 2, 1, 0}));
  EXPECT_EQ(p.dropped, 3);
}

TEST(Dispatch, MatchesNaiveDenseReference) {
  const int64_t N = 37, d = 16, F = 12, E = 6, k = 2;
  Tensor u = random_tensor({N, d}, 1), w = random_tensor({N, k}, 2);
  Tensor w1 = random_tensor({E, F, d}, 3, 0.3f), w3 = random_tensor({E, F, d}, 4, 0.3f),
         w2 = random_tensor({E, d, F}, 5, 0.3f);
  Tensor idx = random_indices(N, k, E, 6);
  DispatchPlan plan = dispatch_plan(idx, E);
  ag::Var out = dispatch_experts(ag::Var(u), plan, ag::Var(w), {ag::Var(w1), ag::Var(w3), ag::Var(w2)});
  std::vector<double> ref = naive_moe(u, idx, w, w1, w3, w2);
  std::vector<float> got = out.value().to_floats();
  for (size_t i = 0; i < ref.size(); ++i) EXPECT_NEAR(got[i], ref[i], 1e-4 * (1 + std::abs(ref[i]))) << i;
}

TEST(Dispatch, ExpertWithNoTokensAndGradients) {
  const int64_t N = 9, d = 6, F = 5, E = 5, k = 2;
  // Expert 4 receives no token: its segment is empty and its gradient must be exactly zero.
  Tensor idx = random_indices(N, k, E - 1, 8);
  DispatchPlan plan = dispatch_plan(idx, E);
  ASSERT_EQ(plan.counts[4], 0);
  std::string err = testing::grad_check(
      [&](const std::vector<ag::Var>& v) { return dispatch_experts(v[0], plan, v[1], {v[2], v[3], v[4]}); },
      {random_tensor({N, d}, 1), random_tensor({N, k}, 2), random_tensor({E, F, d}, 3, 0.5f),
       random_tensor({E, F, d}, 4, 0.5f), random_tensor({E, d, F}, 5, 0.5f)},
      {true, true, true, true, true});
  EXPECT_EQ(err, "");
  ag::Var w1(random_tensor({E, F, d}, 3), true);
  ag::Var out = dispatch_experts(ag::Var(random_tensor({N, d}, 1)), plan, ag::Var(random_tensor({N, k}, 2)),
                                 {w1, ag::Var(random_tensor({E, F, d}, 4)), ag::Var(random_tensor({E, d, F}, 5))});
  ag::backward(ag::sum(out));
  std::vector<float> g = w1.grad().to_floats();
  for (int64_t i = 4 * F * d; i < 5 * F * d; ++i) EXPECT_EQ(g[i], 0.0f);
}

}  // namespace
}  // namespace cmoe
