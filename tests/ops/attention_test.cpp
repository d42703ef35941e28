// attention_test.cpp — fused causal attention and chunked cross-entropy: gradient checks,
// forward and backward against naive f64 compositions (explicit scores / full logits), chunk
// invariance, bf16 vs f32, determinism across thread counts, and the O(T) memory bound.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "core/ops/attention.h"
#include "core/ops/cross_entropy.h"
#include "gtest/gtest.h"
#include "tests/gradcheck.h"

namespace cmoe {
namespace {
using testing::grad_check;
using testing::GradCheckOptions;
using testing::random_tensor;

// ---- Gradient checks ----

CMOE_GRADCHECK(attention) {
  // T = 7: one partial tile; Dh = 5 exercises the masked vector tail.
  const Shape s{2, 7, 2, 5};
  return grad_check([](auto& v) { return ag::attention(v[0], v[1], v[2], 0.6f); },
                    {random_tensor(s, 1), random_tensor(s, 2), random_tensor(s, 3)},
                    {true, true, true});
}
CMOE_GRADCHECK(attention) {
  // T = 70 spans two query and key tiles (off-diagonal and diagonal); checked on a subset.
  const Shape s{1, 70, 2, 4};
  GradCheckOptions opt;
  opt.max_elems = 48;
  return grad_check([](auto& v) { return ag::attention(v[0], v[1], v[2], 0.5f); },
                    {random_tensor(s, 4), random_tensor(s, 5), random_tensor(s, 6)},
                    {true, true, true}, opt);
}

Tensor targets_with_ignored(int64_t n, int64_t vocab, uint64_t seed) {
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) t[i] = static_cast<int32_t>((i * 7 + seed * 3) % vocab);
  t[static_cast<size_t>(n / 2)] = -1;  // one padding row
  return Tensor::from_ints({n}, t);
}

CMOE_GRADCHECK(cross_entropy) {
  // N = 7 rows in chunks of 3 (the last chunk is partial); row 3 is ignored.
  Tensor targets = targets_with_ignored(7, 11, 1);
  return grad_check([targets](auto& v) { return ag::cross_entropy(v[0], v[1], targets, 3); },
                    {random_tensor({7, 6}, 7), random_tensor({11, 6}, 8, 0.5f)}, {true, true});
}

// ---- Helpers ----

// Passes when |got - want| <= atol + rtol * max|want| elementwise; names the first failure.
void expect_close(const std::vector<float>& got, const std::vector<double>& want, double atol,
                  double rtol, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  double scale = 0;
  for (double w : want) scale = std::max(scale, std::abs(w));
  const double tol = atol + rtol * scale;
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_NEAR(got[i], want[i], tol) << what << " element " << i << " (max |ref| " << scale << ")";
  }
}

std::vector<double> to_doubles(const Tensor& t) {
  std::vector<float> f = t.to_floats();
  return {f.begin(), f.end()};
}

// ---- Attention against explicit scores ----

struct AttnRef {
  std::vector<double> out, lse, dq, dk, dv;
};

// Plain causal attention in f64: S = scale q k^T, masked, softmax, P v; backward by hand.
AttnRef naive_attention(const Tensor& qt, const Tensor& kt, const Tensor& vt, const Tensor& dot,
                        double scale) {
  const int64_t B = qt.dim(0), T = qt.dim(1), H = qt.dim(2), Dh = qt.dim(3);
  std::vector<double> q = to_doubles(qt), k = to_doubles(kt), v = to_doubles(vt), g = to_doubles(dot);
  AttnRef r;
  r.out.assign(q.size(), 0.0);
  r.dq.assign(q.size(), 0.0);
  r.dk.assign(q.size(), 0.0);
  r.dv.assign(q.size(), 0.0);
  r.lse.assign(static_cast<size_t>(B * H * T), 0.0);
  auto at = [&](int64_t b, int64_t t, int64_t h) { return ((b * T + t) * H + h) * Dh; };
  std::vector<double> P(static_cast<size_t>(T * T)), dP(static_cast<size_t>(T * T));
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t h = 0; h < H; ++h) {
      for (int64_t t = 0; t < T; ++t) {
        double m = -1e300;
        for (int64_t s = 0; s <= t; ++s) {
          double dotp = 0;
          for (int64_t d = 0; d < Dh; ++d) dotp += q[at(b, t, h) + d] * k[at(b, s, h) + d];
          P[t * T + s] = scale * dotp;
          m = std::max(m, P[t * T + s]);
        }
        double sum = 0;
        for (int64_t s = 0; s <= t; ++s) sum += std::exp(P[t * T + s] - m);
        for (int64_t s = 0; s < T; ++s) P[t * T + s] = s <= t ? std::exp(P[t * T + s] - m) / sum : 0.0;
        r.lse[(b * H + h) * T + t] = m + std::log(sum);
        for (int64_t s = 0; s <= t; ++s) {
          for (int64_t d = 0; d < Dh; ++d) r.out[at(b, t, h) + d] += P[t * T + s] * v[at(b, s, h) + d];
        }
      }
      for (int64_t t = 0; t < T; ++t) {
        double D = 0;
        for (int64_t s = 0; s <= t; ++s) {
          double x = 0;
          for (int64_t d = 0; d < Dh; ++d) x += g[at(b, t, h) + d] * v[at(b, s, h) + d];
          dP[t * T + s] = x;
          D += P[t * T + s] * x;
        }
        for (int64_t s = 0; s <= t; ++s) {
          const double p = P[t * T + s], ds = p * (dP[t * T + s] - D);
          for (int64_t d = 0; d < Dh; ++d) {
            r.dv[at(b, s, h) + d] += p * g[at(b, t, h) + d];
            r.dq[at(b, t, h) + d] += scale * ds * k[at(b, s, h) + d];
            r.dk[at(b, s, h) + d] += scale * ds * q[at(b, t, h) + d];
          }
        }
      }
    }
  }
  return r;
}

void check_attention_against_naive(const Shape& s, float scale) {
  Tensor q = random_tensor(s, 11), k = random_tensor(s, 12), v = random_tensor(s, 13);
  Tensor dout = random_tensor(s, 14);
  Tensor out = Tensor::empty(s, DType::kF32), lse = Tensor::empty({s[0], s[2], s[1]}, DType::kF32);
  ops::attention_forward(out, lse, q, k, v, scale);
  Tensor dq = Tensor::full(s, 7.0f), dk = Tensor::full(s, 7.0f), dv = Tensor::full(s, 7.0f);
  ops::attention_backward(dq, dk, dv, dout, q, k, v, out, lse, scale);
  AttnRef ref = naive_attention(q, k, v, dout, scale);
  const std::string where = s.str();
  expect_close(out.to_floats(), ref.out, 1e-5, 1e-5, "out " + where);
  expect_close(lse.to_floats(), ref.lse, 1e-5, 1e-5, "lse " + where);
  expect_close(dq.to_floats(), ref.dq, 1e-5, 1e-5, "dq " + where);
  expect_close(dk.to_floats(), ref.dk, 1e-5, 1e-5, "dk " + where);
  expect_close(dv.to_floats(), ref.dv, 1e-5, 1e-5, "dv " + where);
}

TEST(Attention, MatchesNaiveSingleTile) { check_attention_against_naive({2, 9, 2, 8}, 0.35f); }
TEST(Attention, MatchesNaiveExactTiles) { check_attention_against_naive({1, 128, 2, 32}, 0.18f); }
TEST(Attention, MatchesNaivePartialTilesOddHeadDim) {
  check_attention_against_naive({2, 150, 3, 20}, 0.22f);
}
TEST(Attention, MatchesNaiveWideHead) { check_attention_against_naive({1, 80, 1, 128}, 0.09f); }

// The inference form over a key/value cache: queries at positions [pos0, pos0 + Tq) against a
// cache longer than needed whose unread rows are NaN (a read would poison the output).
void check_kv_against_naive(int64_t T, int64_t pos0, int64_t Tq, int64_t Tk, int64_t H, int64_t Dh, float scale) {
  const Shape full{1, T, H, Dh};
  Tensor q = random_tensor(full, 41), k = random_tensor(full, 42), v = random_tensor(full, 43);
  AttnRef ref = naive_attention(q, k, v, random_tensor(full, 44), scale);
  Tensor kc = Tensor::full({1, Tk, H, Dh}, std::nanf("")), vc = Tensor::full({1, Tk, H, Dh}, std::nanf(""));
  kc.view({Tk, H, Dh}).slice0(0, pos0 + Tq).copy_from(k.view({T, H, Dh}).slice0(0, pos0 + Tq));
  vc.view({Tk, H, Dh}).slice0(0, pos0 + Tq).copy_from(v.view({T, H, Dh}).slice0(0, pos0 + Tq));
  Tensor qs = q.view({T, H, Dh}).slice0(pos0, pos0 + Tq).clone().view({1, Tq, H, Dh});
  Tensor out = Tensor::empty({1, Tq, H, Dh}, DType::kF32);
  ops::attention_kv_forward(out, qs, kc, vc, scale, pos0);
  const std::vector<double> want(ref.out.begin() + pos0 * H * Dh, ref.out.begin() + (pos0 + Tq) * H * Dh);
  expect_close(out.to_floats(), want, 1e-5, 1e-5, "kv pos0 " + std::to_string(pos0) + " Tq " + std::to_string(Tq));
}

TEST(Attention, KvCacheMatchesNaive) {
  check_kv_against_naive(12, 0, 12, 12, 2, 8, 0.35f);   // the whole sequence at once (a prefill)
  check_kv_against_naive(12, 5, 1, 16, 2, 8, 0.35f);    // one decode step, cache longer than used
  check_kv_against_naive(12, 7, 3, 12, 3, 6, 0.3f);     // a chunk of three after seven cached
  check_kv_against_naive(80, 79, 1, 96, 1, 20, 0.2f);   // the last position of a long row
}

TEST(Attention, KvCacheEqualsFusedForward) {
  // pos0 = 0 and Tk = Tq: the same numbers as the training kernel (B = 2, several heads).
  const Shape s{2, 70, 3, 16};
  Tensor q = random_tensor(s, 51), k = random_tensor(s, 52), v = random_tensor(s, 53);
  Tensor out = Tensor::empty(s, DType::kF32), lse = Tensor::empty({2, 3, 70}, DType::kF32);
  ops::attention_forward(out, lse, q, k, v, 0.25f);
  Tensor kv_out = Tensor::empty(s, DType::kF32);
  ops::attention_kv_forward(kv_out, q, k, v, 0.25f, 0);
  const std::vector<float> a = out.to_floats();
  expect_close(kv_out.to_floats(), std::vector<double>(a.begin(), a.end()), 1e-6, 1e-5, "kv vs fused");
}

TEST(Attention, FirstRowCopiesFirstValue) {
  // Position 0 attends only to itself: out[:,0] = v[:,0] and lse = scale q.k exactly.
  const Shape s{1, 3, 1, 2};
  Tensor q = Tensor::from_floats(s, std::vector<float>{1, 2, 0, 0, 0, 0});
  Tensor k = Tensor::from_floats(s, std::vector<float>{3, 4, 0, 0, 0, 0});
  Tensor v = Tensor::from_floats(s, std::vector<float>{5, -6, 1, 1, 1, 1});
  Tensor out = Tensor::empty(s, DType::kF32), lse = Tensor::empty({1, 1, 3}, DType::kF32);
  ops::attention_forward(out, lse, q, k, v, 0.5f);
  std::vector<float> o = out.to_floats(), l = lse.to_floats();
  EXPECT_FLOAT_EQ(o[0], 5.0f);
  EXPECT_FLOAT_EQ(o[1], -6.0f);
  EXPECT_FLOAT_EQ(l[0], 5.5f);
  // Rows 1 and 2 have zero queries: uniform weights over their prefixes.
  EXPECT_FLOAT_EQ(o[2], 3.0f);
  EXPECT_FLOAT_EQ(o[4], 7.0f / 3.0f);
  EXPECT_NEAR(l[2], std::log(3.0f), 1e-6);
}

TEST(Attention, BackwardIsDeterministicAcrossThreadCounts) {
  const Shape s{2, 100, 2, 16};
  Tensor q = random_tensor(s, 21), k = random_tensor(s, 22), v = random_tensor(s, 23);
  Tensor dout = random_tensor(s, 24);
  auto run = [&](int threads) {
    const int prev = omp_get_max_threads();
    omp_set_num_threads(threads);
    Tensor out = Tensor::empty(s, DType::kF32), lse = Tensor::empty({2, 2, 100}, DType::kF32);
    ops::attention_forward(out, lse, q, k, v, 0.25f);
    Tensor dq = Tensor::empty(s, DType::kF32), dk = Tensor::empty(s, DType::kF32);
    Tensor dv = Tensor::empty(s, DType::kF32);
    ops::attention_backward(dq, dk, dv, dout, q, k, v, out, lse, 0.25f);
    omp_set_num_threads(prev);
    std::vector<float> all = out.to_floats();
    for (const Tensor* t : {&dq, &dk, &dv}) {
      std::vector<float> f = t->to_floats();
      all.insert(all.end(), f.begin(), f.end());
    }
    return all;
  };
  EXPECT_EQ(run(1), run(3));
}

TEST(Attention, ExtraMemoryIsLinearInT) {
  // A (T x T) score matrix of one head would be T*T*4 = 4 MiB; the fused kernels use a few
  // 64 x 64 tiles per thread (independent of T).
  const int64_t T = 1024;
  const Shape s{1, T, 4, 32};
  Tensor q = random_tensor(s, 31), k = random_tensor(s, 32), v = random_tensor(s, 33);
  Tensor out = Tensor::empty(s, DType::kF32), lse = Tensor::empty({1, 4, T}, DType::kF32);
  Tensor dq = Tensor::empty(s, DType::kF32), dk = Tensor::empty(s, DType::kF32);
  Tensor dv = Tensor::empty(s, DType::kF32);
  Allocator& alloc = allocator_for(DeviceType::kCPU);
  const size_t one_head_scores = static_cast<size_t>(T * T) * sizeof(float);

  const size_t before = alloc.bytes_in_use();
  alloc.reset_peak();
  ops::attention_forward(out, lse, q, k, v, 0.2f);
  const size_t fwd_extra = alloc.peak_bytes() - before;
  EXPECT_LT(fwd_extra, one_head_scores / 16) << "forward extra bytes " << fwd_extra;

  alloc.reset_peak();
  ops::attention_backward(dq, dk, dv, out, q, k, v, out, lse, 0.2f);
  const size_t bwd_extra = alloc.peak_bytes() - before;
  EXPECT_LT(bwd_extra, one_head_scores / 16) << "backward extra bytes " << bwd_extra;
}

// ---- Cross-entropy against full logits ----

struct CeRef {
  double loss = 0;
  std::vector<double> lse, dh, dw;
};

// Full (N x V) logits in f64; dloss scales the gradients.
CeRef naive_cross_entropy(const std::vector<double>& h, const std::vector<double>& w,
                          const std::vector<int32_t>& t, int64_t N, int64_t D, int64_t V,
                          double dloss) {
  CeRef r;
  r.lse.assign(static_cast<size_t>(N), 0.0);
  r.dh.assign(static_cast<size_t>(N * D), 0.0);
  r.dw.assign(static_cast<size_t>(V * D), 0.0);
  std::vector<double> logits(static_cast<size_t>(V));
  for (int64_t n = 0; n < N; ++n) {
    double m = -1e300;
    for (int64_t j = 0; j < V; ++j) {
      double x = 0;
      for (int64_t d = 0; d < D; ++d) x += h[n * D + d] * w[j * D + d];
      logits[j] = x;
      m = std::max(m, x);
    }
    double sum = 0;
    for (int64_t j = 0; j < V; ++j) sum += std::exp(logits[j] - m);
    r.lse[n] = m + std::log(sum);
    if (t[n] < 0) continue;
    r.loss += r.lse[n] - logits[t[n]];
    for (int64_t j = 0; j < V; ++j) {
      const double g = dloss * (std::exp(logits[j] - r.lse[n]) - (j == t[n] ? 1.0 : 0.0));
      for (int64_t d = 0; d < D; ++d) {
        r.dh[n * D + d] += g * w[j * D + d];
        r.dw[j * D + d] += g * h[n * D + d];
      }
    }
  }
  return r;
}

TEST(CrossEntropy, MatchesFullLogitsForEveryChunking) {
  const int64_t N = 13, D = 24, V = 37;
  Tensor h = random_tensor({N, D}, 41), w = random_tensor({V, D}, 42, 0.5f);
  Tensor targets = targets_with_ignored(N, V, 2);
  std::vector<int32_t> t(targets.data<int32_t>(), targets.data<int32_t>() + N);
  const float dloss = 0.75f;
  CeRef ref = naive_cross_entropy(to_doubles(h), to_doubles(w), t, N, D, V, dloss);
  Tensor dw0 = random_tensor({V, D}, 43);  // dw accumulates into what is there
  std::vector<double> dw_want = to_doubles(dw0);
  for (size_t i = 0; i < dw_want.size(); ++i) dw_want[i] += ref.dw[i];

  for (int64_t chunk : {int64_t{1}, int64_t{4}, int64_t{5}, N, int64_t{100}}) {
    const std::string where = "chunk " + std::to_string(chunk);
    Tensor loss = Tensor::empty(Shape{}, DType::kF32), lse = Tensor::empty({N}, DType::kF32);
    ops::cross_entropy_forward(loss, lse, h, w, targets, chunk, DType::kF32);
    EXPECT_NEAR(loss.to_floats()[0], ref.loss, 1e-5 * std::abs(ref.loss)) << where;
    expect_close(lse.to_floats(), ref.lse, 1e-5, 1e-6, "lse " + where);
    Tensor dh = Tensor::full({N, D}, 9.0f), dw = dw0.clone();
    ops::cross_entropy_backward(dh, dw, Tensor::full(Shape{}, dloss), h, w, targets, lse, chunk,
                                DType::kF32);
    expect_close(dh.to_floats(), ref.dh, 1e-6, 1e-5, "dh " + where);
    expect_close(dw.to_floats(), dw_want, 1e-6, 1e-5, "dw " + where);
  }
}

TEST(CrossEntropy, IgnoredRowsGetNoGradient) {
  const int64_t N = 4, D = 8, V = 5;
  Tensor h = random_tensor({N, D}, 51), w = random_tensor({V, D}, 52);
  Tensor targets = Tensor::from_ints({N}, std::vector<int32_t>{-1, -1, -1, -1});
  Tensor loss = Tensor::empty(Shape{}, DType::kF32), lse = Tensor::empty({N}, DType::kF32);
  ops::cross_entropy_forward(loss, lse, h, w, targets, 3, DType::kF32);
  EXPECT_EQ(loss.to_floats()[0], 0.0f);
  Tensor dh = Tensor::full({N, D}, 1.0f), dw = Tensor::zeros({V, D}, DType::kF32);
  ops::cross_entropy_backward(dh, dw, Tensor::full(Shape{}, 1.0f), h, w, targets, lse, 3,
                              DType::kF32);
  for (float x : dh.to_floats()) EXPECT_EQ(x, 0.0f);
  for (float x : dw.to_floats()) EXPECT_EQ(x, 0.0f);
}

TEST(CrossEntropy, UniformLogitsGiveLogV) {
  // w = 0: every logit is 0, so each counted row contributes exactly log V.
  const int64_t N = 6, D = 4, V = 50;
  Tensor h = random_tensor({N, D}, 61), w = Tensor::zeros({V, D}, DType::kF32);
  Tensor targets = targets_with_ignored(N, V, 3);
  Tensor loss = Tensor::empty(Shape{}, DType::kF32), lse = Tensor::empty({N}, DType::kF32);
  ops::cross_entropy_forward(loss, lse, h, w, targets, 4, DType::kF32);
  EXPECT_NEAR(loss.to_floats()[0], 5 * std::log(50.0), 1e-5);
}

// The one-pass forward+backward is the two-pass pair bit for bit (f32 and bf16, every chunking,
// ignored rows, a dloss that is not a power of two), and skips the gradients not asked for.
TEST(CrossEntropy, ForwardBackwardInOnePassEqualsTheTwoPasses) {
  const int64_t N = 13, D = 24, V = 37;
  Tensor h = random_tensor({N, D}, 81), w = random_tensor({V, D}, 82, 0.5f);
  Tensor targets = targets_with_ignored(N, V, 3);
  const float dloss = 0.37f;
  for (DType dt : {DType::kF32, DType::kBF16}) {
    for (int64_t chunk : {int64_t{1}, int64_t{5}, N}) {
      const std::string where = std::string(dtype_name(dt)) + " chunk " + std::to_string(chunk);
      Tensor loss1 = Tensor::empty(Shape{}, DType::kF32), lse1 = Tensor::empty({N}, DType::kF32);
      ops::cross_entropy_forward(loss1, lse1, h, w, targets, chunk, dt);
      Tensor dh1 = Tensor::empty({N, D}, DType::kF32), dw1 = Tensor::zeros({V, D}, DType::kF32);
      ops::cross_entropy_backward(dh1, dw1, Tensor::full(Shape{}, dloss), h, w, targets, lse1, chunk, dt);

      Tensor loss2 = Tensor::empty(Shape{}, DType::kF32), lse2 = Tensor::empty({N}, DType::kF32);
      Tensor dh2 = Tensor::empty({N, D}, DType::kF32), dw2 = Tensor::zeros({V, D}, DType::kF32);
      ops::cross_entropy_forward_backward(loss2, lse2, dh2, dw2, dloss, h, w, targets, chunk, dt);
      EXPECT_EQ(loss2.to_floats(), loss1.to_floats()) << where;
      EXPECT_EQ(lse2.to_floats(), lse1.to_floats()) << where;
      EXPECT_EQ(dh2.to_floats(), dh1.to_floats()) << where;
      EXPECT_EQ(dw2.to_floats(), dw1.to_floats()) << where;

      // Only dw wanted (h is no parameter's descendant), then only dh.
      Tensor none, dw3 = Tensor::zeros({V, D}, DType::kF32), dh3 = Tensor::empty({N, D}, DType::kF32);
      ops::cross_entropy_forward_backward(loss2, lse2, none, dw3, dloss, h, w, targets, chunk, dt);
      EXPECT_EQ(dw3.to_floats(), dw1.to_floats()) << where;
      ops::cross_entropy_forward_backward(loss2, lse2, dh3, none, dloss, h, w, targets, chunk, dt);
      EXPECT_EQ(dh3.to_floats(), dh1.to_floats()) << where;
      EXPECT_EQ(loss2.to_floats(), loss1.to_floats()) << where;
    }
  }
}

// bf16 rounds h, w and dlogits to 8 mantissa bits (relative error <= 2^-9 each); with f32
// accumulation the logits move by about 2^-8 |h||w|, so the summed loss stays within 1% and
// gradients within 2% of their f32 values (max-norm), for unit-scale inputs at D = 64.
TEST(CrossEntropy, Bf16WithinToleranceOfF32) {
  const int64_t N = 40, D = 64, V = 300;
  Tensor h = random_tensor({N, D}, 71), w = random_tensor({V, D}, 72, 0.125f);
  Tensor targets = targets_with_ignored(N, V, 4);
  auto run = [&](DType dt, Tensor& dh, Tensor& dw) {
    Tensor loss = Tensor::empty(Shape{}, DType::kF32), lse = Tensor::empty({N}, DType::kF32);
    ops::cross_entropy_forward(loss, lse, h, w, targets, 16, dt);
    dh = Tensor::empty({N, D}, DType::kF32);
    dw = Tensor::zeros({V, D}, DType::kF32);
    ops::cross_entropy_backward(dh, dw, Tensor::full(Shape{}, 1.0f), h, w, targets, lse, 16, dt);
    return loss.to_floats()[0];
  };
  Tensor dh32, dw32, dh16, dw16;
  const float l32 = run(DType::kF32, dh32, dw32), l16 = run(DType::kBF16, dh16, dw16);
  EXPECT_NEAR(l16, l32, 1e-2 * std::abs(l32));
  expect_close(dh16.to_floats(), to_doubles(dh32), 0.0, 2e-2, "bf16 dh");
  expect_close(dw16.to_floats(), to_doubles(dw32), 0.0, 2e-2, "bf16 dw");

  // With h and w pre-rounded to bf16 the forward is exact up to f32 accumulation.
  Tensor hb = h.to_dtype(DType::kBF16).to_dtype(DType::kF32);
  Tensor wb = w.to_dtype(DType::kBF16).to_dtype(DType::kF32);
  std::vector<int32_t> t(targets.data<int32_t>(), targets.data<int32_t>() + N);
  CeRef ref = naive_cross_entropy(to_doubles(hb), to_doubles(wb), t, N, D, V, 1.0);
  EXPECT_NEAR(l16, ref.loss, 1e-5 * std::abs(ref.loss));
}

}  // namespace
}  // namespace cmoe
