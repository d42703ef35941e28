// ep_dp_test.cpp — expert-parallel dispatch and the data-parallel gradient reducer under
// mpirun (CTest: -np 2 and -np 4), each against a single-rank computation:
//   - expert_parallel_apply with the experts spread over the ranks equals dispatch_experts
//     with all experts on one rank, forward and backward (the inputs' gradients, and each
//     rank's expert-slice gradients equal its rows of the reference gradient summed over the
//     ranks' tokens), including ranks whose experts receive no token;
//   - GradReducer averages rank-dependent gradients to their closed-form mean, over dp for
//     replicated parameters and over edp for expert slices, and with ZeRO-1 leaves the mean on
//     each parameter's one owner and all-gathers the updated values.
// Every rank counts its mismatches; the counts are summed so all ranks fail together.
#include <cmath>
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "moe/dispatch.h"
#include "parallel/backend/mpi.h"
#include "parallel/expert_parallel.h"
#include "parallel/grad_reducer.h"
#include "parallel/process_groups.h"
#include "tests/gradcheck.h"
#include "tests/parallel/mpi_gtest.h"

namespace cmoe::parallel {
namespace {

MpiCommunicator* g_world = nullptr;

void expect_no_errors_anywhere(int64_t local_errors, const char* what) {
  Tensor t = Tensor::zeros({1}, DType::kI64);
  t.data<int64_t>()[0] = local_errors;
  ASSERT_TRUE(g_world->all_reduce(t).ok());
  EXPECT_EQ(t.data<int64_t>()[0], 0) << what << ": mismatches summed over ranks (" << local_errors << " on rank "
                                     << g_world->rank() << ")";
}

int64_t count_far(const Tensor& got, const std::vector<float>& want, double tol, const char* what) {
  const std::vector<float> g = got.to_floats();
  int64_t bad = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    const double err = std::fabs(double(g[i]) - want[i]) / std::max(1.0, std::fabs(double(want[i])));
    if (!(err <= tol)) {
      if (bad++ < 3) std::fprintf(stderr, "[rank %d] %s[%zu] = %g, want %g\n", g_world->rank(), what, i, g[i], want[i]);
    }
  }
  return bad + static_cast<int64_t>(g.size() != want.size());
}

std::unique_ptr<Communicator> split_all(const char* name) {
  auto c = g_world->split(0, g_world->rank(), name);
  CMOE_CHECK(c.ok(), c.status().message());
  return std::move(*c);
}

TEST(ExpertParallel, EqualsSingleRankDispatchForwardAndBackward) {
  auto ep = split_all("ep");
  const int R = ep->size(), r = ep->rank();
  const int64_t E = 4 * R, k = 2, d = 6, F = 5, N = 9;
  // Global experts, the same on every rank; each rank holds its slice.
  const Tensor W1 = testing::random_tensor({E, F, d}, 1), W3 = testing::random_tensor({E, F, d}, 2),
               W2 = testing::random_tensor({E, d, F}, 3);
  const ExpertRange mine = owned_experts(E, R, r);
  ExpertWeights local{ag::Var(W1.slice0(mine.begin, mine.end).clone(), true),
                      ag::Var(W3.slice0(mine.begin, mine.end).clone(), true),
                      ag::Var(W2.slice0(mine.begin, mine.end).clone(), true)};
  // This rank's tokens: choices avoid the last rank's experts entirely on even ranks (an
  // expert slice with no tokens from them), and -1 slots appear (top-p padding).
  const Tensor u0 = testing::random_tensor({N, d}, 10 + r);
  Tensor idx = Tensor::empty({N, k}, DType::kI32);
  const int64_t span = r % 2 == 0 ? E - E / R : E;
  for (int64_t n = 0; n < N; ++n) {
    const int32_t a = static_cast<int32_t>((n * 7 + r * 3) % span);
    idx.data<int32_t>()[n * k] = a;
    idx.data<int32_t>()[n * k + 1] = n % 4 == 3 ? -1 : static_cast<int32_t>((a + 1 + n % 3) % span);
  }
  const Tensor w0 = testing::random_tensor({N, k}, 20 + r, 0.5f);
  const Tensor seed = testing::random_tensor({N, d}, 30 + r);

  ag::Var u(u0.clone(), true), w(w0.clone(), true);
  ag::Var out = expert_parallel_apply(u, idx, w, E, *ep, [&](const ag::Var& x, const Tensor& ids, const ag::Var& wr) {
    return dispatch_experts(x, dispatch_plan(ids, mine.size()), wr, local);
  });
  ag::backward({out}, {seed});

  ag::Var ur(u0.clone(), true), wref(w0.clone(), true);
  ExpertWeights all{ag::Var(W1.clone(), true), ag::Var(W3.clone(), true), ag::Var(W2.clone(), true)};
  ag::Var ref = dispatch_experts(ur, dispatch_plan(idx, E), wref, all);
  ag::backward({ref}, {seed});

  int64_t bad = count_far(out.value(), ref.value().to_floats(), 1e-5, "out");
  bad += count_far(u.grad(), ur.grad().to_floats(), 1e-5, "du");
  bad += count_far(w.grad(), wref.grad().to_floats(), 1e-5, "dw");
  // Expert gradients: the reference summed over every rank's tokens, this rank's rows.
  for (auto [got, refv] : {std::pair{local.w1, all.w1}, {local.w3, all.w3}, {local.w2, all.w2}}) {
    Tensor sum = refv.grad().clone();
    ASSERT_TRUE(ep->all_reduce(sum).ok());
    const std::vector<float> rows = sum.slice0(mine.begin, mine.end).to_floats();
    bad += got.grad().defined() ? count_far(got.grad(), rows, 1e-5, "dW") : 1;
  }
  expect_no_errors_anywhere(bad, "expert_parallel_apply vs single-rank dispatch");
}

// Parameters whose gradient on rank r is (r + 1) * base: the mean over R ranks is
// base * (R + 1) / 2 exactly (small integers).
std::vector<Param> params_with_grads(int r, bool expert_too) {
  std::vector<Param> ps;
  const Shape shapes[] = {{3, 5}, {7}, {2, 2, 3}, {11}};
  for (size_t i = 0; i < std::size(shapes); ++i) {
    Param p{absl::StrCat("p", i), ag::Var(Tensor::full(shapes[i], 100.0f + i), true)};
    p.expert = expert_too && i == 2;
    Tensor g = Tensor::empty(shapes[i], DType::kF32);
    for (int64_t e = 0; e < g.numel(); ++e) g.data<float>()[e] = static_cast<float>((r + 1) * (e % 5 + i));
    p.var.set_grad(g);
    ps.push_back(p);
  }
  return ps;
}

TEST(GradReducer, AveragesOverDataParallelAndExpertDataParallelGroups) {
  const int R = g_world->size(), r = g_world->rank();
  auto dp = split_all("dp");
  auto edp = g_world->split(r % 2, r, "edp");  // expert slices reduce over a different group
  ASSERT_TRUE(edp.ok());
  std::vector<Param> ps = params_with_grads(r, true);
  GradReducer red(&ps, dp.get(), edp->get(), R, /*bucket_elems=*/16);
  EXPECT_GT(red.num_buckets(), 1);
  auto hook = red.hook();
  for (size_t i = ps.size(); i-- > 0;) hook(i);  // gradients complete in reverse order
  ASSERT_TRUE(red.finish().ok());
  int64_t bad = 0;
  const int E = (*edp)->size();
  for (size_t i = 0; i < ps.size(); ++i) {
    // Replicated: sum over all R ranks of (r + 1) = R (R + 1) / 2, divided by R. Expert: the
    // sum over the edp group's ranks, also divided by R (the data-parallel size).
    double factor = 0;
    if (ps[i].expert) {
      for (int q = r % 2; q < R; q += 2) factor += q + 1;
    } else {
      factor = R * (R + 1) / 2.0;
    }
    std::vector<float> want;
    for (int64_t e = 0; e < ps[i].var.value().numel(); ++e) want.push_back(static_cast<float>(factor * (e % 5 + i) / R));
    bad += count_far(ps[i].var.grad(), want, 0, ps[i].name.c_str());
  }
  EXPECT_EQ(E, (R + 1 - r % 2) / 2);
  expect_no_errors_anywhere(bad, "GradReducer mean gradients");
}

TEST(GradReducer, Zero1LeavesTheMeanOnOneOwnerAndGathersValues) {
  const int R = g_world->size(), r = g_world->rank();
  auto dp = split_all("dp");
  std::vector<Param> ps = params_with_grads(r, false);
  GradReducer red(&ps, dp.get(), nullptr, R, 1 << 20, /*distributed=*/true);
  ASSERT_TRUE(red.finish().ok());
  int64_t bad = 0, owned = 0;
  for (size_t i = 0; i < ps.size(); ++i) {
    if (!red.owns(i)) {
      bad += ps[i].var.grad().defined();
      continue;
    }
    ++owned;
    std::vector<float> want;
    for (int64_t e = 0; e < ps[i].var.value().numel(); ++e)
      want.push_back(static_cast<float>((R + 1) / 2.0 * (e % 5 + i)));
    bad += count_far(ps[i].var.grad(), want, 0, ps[i].name.c_str());
    ps[i].var.mutable_value().fill_(static_cast<float>(1000 + i));  // the owner's "update"
  }
  Tensor n = Tensor::from_floats({1}, std::vector<float>{static_cast<float>(owned)});
  ASSERT_TRUE(g_world->all_reduce(n).ok());
  EXPECT_EQ(n.data<float>()[0], static_cast<float>(ps.size())) << "every parameter has exactly one owner";
  ASSERT_TRUE(red.gather_params().ok());
  for (size_t i = 0; i < ps.size(); ++i)
    bad += count_far(ps[i].var.value(), std::vector<float>(ps[i].var.value().numel(), 1000.0f + i), 0, "gathered");
  expect_no_errors_anywhere(bad, "ZeRO-1 reduce-scatter and all-gather");
}

}  // namespace
}  // namespace cmoe::parallel

int main(int argc, char** argv) {
  auto world = cmoe::testing::mpi_test_world(&argc, &argv);
  cmoe::parallel::g_world = world.get();
  const int rc = cmoe::testing::run_all_tests_on_every_rank(*world);
  world.reset();
  return rc;
}
