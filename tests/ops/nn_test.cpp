// nn_test.cpp — embedding, rmsnorm, rope, swiglu, softmax, topk, gather_rows,
// scatter_add_rows: gradient checks for the op harness, and each kernel against a plain
// reference written here (double precision where rounding matters, bitwise where the kernel
// promises the same operations in the same order).
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <complex>
#include <cstring>
#include <numeric>
#include <vector>

#include "core/ops/embedding.h"
#include "core/ops/permute.h"
#include "core/ops/rmsnorm.h"
#include "core/ops/rope.h"
#include "core/ops/softmax.h"
#include "core/ops/swiglu.h"
#include "gtest/gtest.h"
#include "tests/gradcheck.h"

namespace cmoe {
namespace {
using testing::grad_check;
using testing::random_tensor;

Tensor ints(const Shape& s, std::vector<int32_t> v) { return Tensor::from_ints(s, v); }
Tensor floats(const Shape& s, std::vector<float> v) { return Tensor::from_floats(s, v); }
std::vector<float> as_vec(const Tensor& t) { return t.to_floats(); }

// Random i32 in [0, n) from the Philox stream (deterministic).
Tensor random_ids(int64_t count, int32_t n, uint64_t stream) {
  std::vector<int32_t> v(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) v[i] = static_cast<int32_t>(rng_u32(7, stream, i) % n);
  return ints({count}, v);
}

// Runs f with the OpenMP thread count set to n, restoring the previous count.
template <typename F>
void with_threads(int n, F f) {
  const int prev = omp_get_max_threads();
  omp_set_num_threads(n);
  f();
  omp_set_num_threads(prev);
}

// ---- gradient checks (op harness) ----------------------------------------------------------

CMOE_GRADCHECK(embedding) {
  // Id 3 appears three times: its row must receive the sum of three output gradients.
  Tensor ids = ints({2, 3}, {3, 1, 3, 0, 6, 3});
  return grad_check([ids](auto& v) { return ag::embedding(v[0], ids); }, {random_tensor({7, 5}, 11)},
                    {true});
}

CMOE_GRADCHECK(rmsnorm) {
  return grad_check([](auto& v) { return ag::rmsnorm(v[0], v[1], 1e-5f); },
                    {random_tensor({2, 3, 8}, 12), random_tensor({8}, 13)}, {true, true});
}

CMOE_GRADCHECK(rope) {
  return grad_check([](auto& v) { return ag::rope(v[0], 10000.0f, 5); },
                    {random_tensor({2, 3, 2, 8}, 14)}, {true});
}

CMOE_GRADCHECK(swiglu) {
  return grad_check([](auto& v) { return ag::swiglu(v[0], v[1]); },
                    {random_tensor({3, 10}, 15, 2.0f), random_tensor({3, 10}, 16)}, {true, true});
}

CMOE_GRADCHECK(softmax) {
  return grad_check([](auto& v) { return ag::softmax(v[0]); }, {random_tensor({2, 2, 6}, 17)}, {true});
}

CMOE_GRADCHECK(topk) {
  // Entries 0.5 apart (a shuffled ladder plus noise < 0.05), so the +-0.01 finite-difference
  // steps never change which entries are selected.
  std::vector<float> x(3 * 8);
  std::vector<float> noise = as_vec(random_tensor({24}, 18, 0.01f));
  for (int n = 0; n < 3; ++n) {
    for (int e = 0; e < 8; ++e) x[n * 8 + e] = 0.5f * static_cast<float>((e * 5 + n * 3) % 8) + noise[n * 8 + e];
  }
  Tensor mask = ints({3, 8}, {0, 0, 1, 0, 0, 0, 0, 0,  //
                              0, 0, 0, 0, 0, 0, 0, 0,  //
                              1, 1, 0, 0, 0, 0, 0, 0});
  return grad_check([mask](auto& v) { return ag::topk(v[0], 3, mask).values; }, {floats({3, 8}, x)},
                    {true});
}

CMOE_GRADCHECK(gather_rows) {
  Tensor idx = ints({6}, {4, 0, 4, 2, 4, 1});
  return grad_check([idx](auto& v) { return ag::gather_rows(v[0], idx); }, {random_tensor({5, 4}, 19)},
                    {true});
}

CMOE_GRADCHECK(scatter_add_rows) {
  Tensor idx = ints({6}, {1, 0, 1, 2, 1, 0});  // destinations collide
  return grad_check([idx](auto& v) { return ag::scatter_add_rows(v[0], idx, v[1], 3); },
                    {random_tensor({6, 4}, 20), random_tensor({6}, 21)}, {true, true});
}

// ---- rmsnorm --------------------------------------------------------------------------------

TEST(RmsNorm, MatchesNaiveDouble) {
  // D = 300 exercises the masked tail; 64 x 300 is above the OpenMP threshold.
  const int64_t n = 64, d = 300;
  const float eps = 1e-5f;
  Tensor x = random_tensor({n, d}, 30), w = random_tensor({d}, 31), g = random_tensor({n, d}, 32);
  Tensor out = Tensor::empty({n, d}, DType::kF32), rstd = Tensor::empty({n}, DType::kF32);
  ops::rmsnorm_forward(out, rstd, x, w, eps);
  Tensor dx = Tensor::empty({n, d}, DType::kF32), dw = Tensor::zeros({d}, DType::kF32);
  ops::rmsnorm_backward(dx, dw, g, x, w, rstd);

  std::vector<float> xv = as_vec(x), wv = as_vec(w), gv = as_vec(g), ov = as_vec(out),
                     rv = as_vec(rstd), dxv = as_vec(dx), dwv = as_vec(dw);
  std::vector<double> dw_ref(d, 0.0);
  for (int64_t r = 0; r < n; ++r) {
    double ss = 0, dot = 0;
    for (int64_t i = 0; i < d; ++i) ss += double(xv[r * d + i]) * xv[r * d + i];
    const double rs = 1.0 / std::sqrt(ss / d + eps);
    EXPECT_NEAR(rv[r], rs, 1e-6 * rs);
    for (int64_t i = 0; i < d; ++i) {
      const double o = xv[r * d + i] * rs * wv[i];
      ASSERT_NEAR(ov[r * d + i], o, 1e-6 * (std::abs(o) + 1e-3)) << r << "," << i;
      dot += double(gv[r * d + i]) * wv[i] * xv[r * d + i];
      dw_ref[i] += double(gv[r * d + i]) * xv[r * d + i] * rs;
    }
    for (int64_t i = 0; i < d; ++i) {
      const double ref = rs * (gv[r * d + i] * double(wv[i]) - xv[r * d + i] * rs * rs * dot / d);
      ASSERT_NEAR(dxv[r * d + i], ref, 1e-5) << r << "," << i;
    }
  }
  for (int64_t i = 0; i < d; ++i) EXPECT_NEAR(dwv[i], dw_ref[i], 1e-5 * (std::abs(dw_ref[i]) + 1));
}

TEST(RmsNorm, WeightGradientIsIndependentOfThreadCount) {
  const int64_t n = 200, d = 96;
  Tensor x = random_tensor({n, d}, 33), w = random_tensor({d}, 34), g = random_tensor({n, d}, 35);
  Tensor out = Tensor::empty({n, d}, DType::kF32), rstd = Tensor::empty({n}, DType::kF32);
  ops::rmsnorm_forward(out, rstd, x, w, 1e-6f);
  std::vector<float> dw_by_threads[2];
  for (int t = 1; t <= 2; ++t) {
    with_threads(t, [&] {
      Tensor dx, dw = Tensor::zeros({d}, DType::kF32);
      ops::rmsnorm_backward(dx, dw, g, x, w, rstd);  // dx undefined: dw only
      dw_by_threads[t - 1] = as_vec(dw);
    });
  }
  EXPECT_EQ(dw_by_threads[0], dw_by_threads[1]);
}

// ---- rope -----------------------------------------------------------------------------------

TEST(Rope, MatchesComplexRotation) {
  const int64_t b = 2, t = 5, h = 3, dh = 8, half = dh / 2, pos0 = 1000;
  const float theta = 10000.0f;
  Tensor x = random_tensor({b, t, h, dh}, 40);
  Tensor out = Tensor::empty(x.shape(), DType::kF32);
  ops::rope_forward(out, x, theta, pos0);
  std::vector<float> xv = as_vec(x), ov = as_vec(out);
  for (int64_t bi = 0; bi < b; ++bi)
    for (int64_t ti = 0; ti < t; ++ti)
      for (int64_t hi = 0; hi < h; ++hi)
        for (int64_t i = 0; i < half; ++i) {
          const int64_t base = ((bi * t + ti) * h + hi) * dh;
          // The pair (x[i], x[i + Dh/2]) as one complex number, rotated by angle p * f_i.
          const std::complex<double> z(xv[base + i], xv[base + i + half]);
          const double f = std::pow(double(theta), -2.0 * i / dh);
          const std::complex<double> r = z * std::polar(1.0, double(pos0 + ti) * f);
          EXPECT_NEAR(ov[base + i], r.real(), 1e-6);
          EXPECT_NEAR(ov[base + i + half], r.imag(), 1e-6);
        }
}

TEST(Rope, BackwardInvertsForwardInPlace) {
  Tensor x = random_tensor({2, 7, 4, 16}, 41);
  Tensor y = x.clone();
  ops::rope_forward(y, y, 500000.0f, 3);  // out aliases x
  ops::rope_backward(y, y, 500000.0f, 3);
  std::vector<float> xv = as_vec(x), yv = as_vec(y);
  for (size_t i = 0; i < xv.size(); ++i) ASSERT_NEAR(yv[i], xv[i], 1e-6) << i;
}

TEST(Rope, OffsetEqualsSliceOfLongerSequence) {
  const int64_t t_long = 12, t0 = 5, h = 2, dh = 8, row = h * dh;
  Tensor x_long = random_tensor({1, t_long, h, dh}, 42);
  Tensor out_long = Tensor::empty(x_long.shape(), DType::kF32);
  ops::rope_forward(out_long, x_long, 10000.0f, 0);
  // Tokens t0.. of the long sequence, rotated on their own with pos0 = t0.
  Tensor x_tail = Tensor::empty({1, t_long - t0, h, dh}, DType::kF32);
  std::memcpy(x_tail.data<float>(), x_long.data<float>() + t0 * row, (t_long - t0) * row * sizeof(float));
  Tensor out_tail = Tensor::empty(x_tail.shape(), DType::kF32);
  ops::rope_forward(out_tail, x_tail, 10000.0f, t0);
  std::vector<float> lv = as_vec(out_long), tv = as_vec(out_tail);
  EXPECT_EQ(tv, std::vector<float>(lv.begin() + t0 * row, lv.end()));
}

// ---- swiglu ---------------------------------------------------------------------------------

TEST(SwiGlu, MatchesNaiveDouble) {
  const int64_t n = 7, f = 45;  // 315 elements: vector body and masked tail
  Tensor gate = random_tensor({n, f}, 50, 6.0f), up = random_tensor({n, f}, 51), g = random_tensor({n, f}, 52);
  // Extremes: saturated sigmoid on both sides and the clamp edges of the exp.
  float* gp = gate.data<float>();
  gp[0] = 100.0f;
  gp[1] = -100.0f;
  gp[2] = 88.0f;
  gp[3] = -88.0f;
  gp[4] = 0.0f;
  gp[5] = -1e-30f;
  Tensor out = Tensor::empty({n, f}, DType::kF32), dgate = Tensor::empty({n, f}, DType::kF32),
         dup = Tensor::empty({n, f}, DType::kF32);
  ops::swiglu_forward(out, gate, up);
  ops::swiglu_backward(dgate, dup, g, gate, up);
  std::vector<float> gv = as_vec(gate), uv = as_vec(up), dv = as_vec(g), ov = as_vec(out),
                     dgv = as_vec(dgate), duv = as_vec(dup);
  for (int64_t i = 0; i < n * f; ++i) {
    const double z = gv[i], s = 1.0 / (1.0 + std::exp(-z)), silu = z * s;
    const double o = silu * uv[i], du = dv[i] * silu, dg = dv[i] * uv[i] * s * (1.0 + z * (1.0 - s));
    ASSERT_NEAR(ov[i], o, 1e-6 * std::abs(o) + 1e-30) << "z=" << z;
    ASSERT_NEAR(duv[i], du, 1e-6 * std::abs(du) + 1e-30) << "z=" << z;
    ASSERT_NEAR(dgv[i], dg, 2e-6 * std::abs(dg) + 1e-6 * std::abs(dv[i] * uv[i])) << "z=" << z;
  }
}

// bf16 outputs are the f32 results rounded (what a bf16 matmul would take), bit for bit: over
// sizes that end mid-vector, mid-block (512) and mid-chunk, and with each output's dtype chosen
// on its own (both bf16, mixed, one undefined).
TEST(SwiGlu, Bf16OutputsAreTheF32ResultsRounded) {
  for (int64_t numel : {int64_t{37}, int64_t{1000}, int64_t{(1 << 13) + 531}, int64_t{3 * (1 << 13) + 17}}) {
    Tensor gate = random_tensor({numel}, 70, 6.0f), up = random_tensor({numel}, 71), g = random_tensor({numel}, 72);
    Tensor out32 = Tensor::empty({numel}, DType::kF32), out16 = Tensor::empty({numel}, DType::kBF16);
    ops::swiglu_forward(out32, gate, up);
    ops::swiglu_forward(out16, gate, up);
    auto rounded = [](const Tensor& t) {
      std::vector<uint16_t> b;
      for (float v : as_vec(t)) b.push_back(f32_to_bf16(v).bits);
      return b;
    };
    auto bits = [](const Tensor& t) {
      const bf16* p = t.data<bf16>();
      std::vector<uint16_t> b;
      for (int64_t i = 0; i < t.numel(); ++i) b.push_back(p[i].bits);
      return b;
    };
    EXPECT_EQ(bits(out16), rounded(out32)) << numel;
    Tensor dg32 = Tensor::empty({numel}, DType::kF32), du32 = Tensor::empty({numel}, DType::kF32);
    ops::swiglu_backward(dg32, du32, g, gate, up);
    for (int mode = 0; mode < 4; ++mode) {
      // 0: both bf16; 1: dgate bf16, dup f32; 2: dgate f32, dup bf16; 3: dgate bf16 only.
      Tensor dg = Tensor::empty({numel}, mode == 2 ? DType::kF32 : DType::kBF16);
      Tensor du = mode == 3 ? Tensor() : Tensor::empty({numel}, mode == 1 ? DType::kF32 : DType::kBF16);
      ops::swiglu_backward(dg, du, g, gate, up);
      if (dg.dtype() == DType::kBF16) {
        EXPECT_EQ(bits(dg), rounded(dg32)) << numel << " mode " << mode;
      } else {
        EXPECT_EQ(as_vec(dg), as_vec(dg32)) << numel << " mode " << mode;
      }
      if (du.defined() && du.dtype() == DType::kBF16) {
        EXPECT_EQ(bits(du), rounded(du32)) << numel << " mode " << mode;
      } else if (du.defined()) {
        EXPECT_EQ(as_vec(du), as_vec(du32)) << numel << " mode " << mode;
      }
    }
  }
}

// ---- softmax / topk -------------------------------------------------------------------------

TEST(Softmax, RowsSumToOneAndMatchNaive) {
  for (int64_t e : {16, 20, 128}) {
    const int64_t n = 70;
    Tensor x = random_tensor({n, e}, 60 + e, 8.0f), g = random_tensor({n, e}, 61 + e);
    Tensor y = Tensor::empty({n, e}, DType::kF32), dx = Tensor::empty({n, e}, DType::kF32);
    ops::softmax_forward(y, x);
    ops::softmax_backward(dx, g, y);
    std::vector<float> xv = as_vec(x), yv = as_vec(y), gv = as_vec(g), dxv = as_vec(dx);
    for (int64_t r = 0; r < n; ++r) {
      const float* xr = xv.data() + r * e;
      const double mx = *std::max_element(xr, xr + e);
      double z = 0, sum = 0, dot = 0;
      for (int64_t i = 0; i < e; ++i) z += std::exp(xr[i] - mx);
      for (int64_t i = 0; i < e; ++i) {
        const double p = std::exp(xr[i] - mx) / z;
        ASSERT_NEAR(yv[r * e + i], p, 1e-6 * p + 1e-12) << "E=" << e << " row " << r;
        sum += yv[r * e + i];
        dot += double(gv[r * e + i]) * yv[r * e + i];
      }
      EXPECT_NEAR(sum, 1.0, 1e-6);
      for (int64_t i = 0; i < e; ++i) {
        ASSERT_NEAR(dxv[r * e + i], yv[r * e + i] * (gv[r * e + i] - dot), 1e-6);
      }
    }
  }
}

TEST(TopK, MatchesPartialSortWithTiesAndMask) {
  const int64_t n = 40, e = 37;
  // Values from a small set, so most rows have ties; every third entry of some rows masked.
  std::vector<float> x(n * e);
  std::vector<int32_t> mask(n * e, 0);
  for (int64_t i = 0; i < n * e; ++i) {
    x[i] = static_cast<float>(rng_u32(7, 62, i) % 5) - 2.0f;
    mask[i] = (i / e) % 2 == 0 && i % 3 == 0;
  }
  Tensor xt = floats({n, e}, x), mt = ints({n, e}, mask);
  for (int k = 1; k <= 8; ++k) {
    for (bool use_mask : {false, true}) {
      Tensor values = Tensor::empty({n, k}, DType::kF32), indices = Tensor::empty({n, k}, DType::kI32);
      ops::topk_forward(values, indices, xt, k, use_mask ? mt : Tensor());
      std::vector<float> vv = as_vec(values);
      const int32_t* iv = indices.data<int32_t>();
      for (int64_t r = 0; r < n; ++r) {
        std::vector<int32_t> cand;
        for (int32_t i = 0; i < e; ++i)
          if (!use_mask || mask[r * e + i] == 0) cand.push_back(i);
        std::partial_sort(cand.begin(), cand.begin() + k, cand.end(), [&](int32_t a, int32_t b) {
          return x[r * e + a] > x[r * e + b] || (x[r * e + a] == x[r * e + b] && a < b);
        });
        for (int j = 0; j < k; ++j) {
          ASSERT_EQ(iv[r * k + j], cand[j]) << "k=" << k << " mask=" << use_mask << " row " << r;
          ASSERT_EQ(vv[r * k + j], x[r * e + cand[j]]);
        }
      }
    }
  }
}

TEST(TopK, NaNRanksLast) {
  const float nan = std::nanf("");
  Tensor x = floats({1, 5}, {nan, -1.0f, nan, -3.0f, 2.0f});
  Tensor values = Tensor::empty({1, 4}, DType::kF32), indices = Tensor::empty({1, 4}, DType::kI32);
  ops::topk_forward(values, indices, x, 4, Tensor());
  const int32_t* iv = indices.data<int32_t>();
  EXPECT_EQ(std::vector<int32_t>(iv, iv + 4), (std::vector<int32_t>{4, 1, 3, 0}));
}

TEST(TopK, BackwardScattersIntoSelectedEntries) {
  Tensor indices = ints({2, 2}, {3, 0, 1, 2});
  Tensor dv = floats({2, 2}, {1.5f, -2.0f, 4.0f, 0.25f});
  Tensor dx = Tensor::full({2, 4}, 9.0f);  // overwritten, not accumulated
  ops::topk_backward(dx, dv, indices);
  EXPECT_EQ(as_vec(dx), (std::vector<float>{-2.0f, 0, 0, 1.5f, 0, 4.0f, 0.25f, 0}));
}

// ---- gather / scatter / embedding -----------------------------------------------------------

// out[idx[m]] += w[m] * y[m] in m order, the loop the kernel promises to equal.
std::vector<float> naive_scatter(const std::vector<float>& y, const std::vector<int32_t>& idx,
                                 const std::vector<float>& w, int64_t n_out, int64_t d) {
  std::vector<float> out(n_out * d, 0.0f);
  for (size_t m = 0; m < idx.size(); ++m)
    for (int64_t i = 0; i < d; ++i) out[idx[m] * d + i] += (w.empty() ? 1.0f : w[m]) * y[m * d + i];
  return out;
}

std::vector<int32_t> to_ints(const Tensor& t) {
  const int32_t* p = t.data<int32_t>();
  return std::vector<int32_t>(p, p + t.numel());
}

TEST(ScatterAddRows, DeterministicAcrossThreadCountsAndMatchesNaive) {
  // 4096 x 64 is above the OpenMP threshold; 512 destinations get ~8 colliding rows each.
  const int64_t m = 4096, d = 64, n_out = 512;
  Tensor y = random_tensor({m, d}, 70), idx = random_ids(m, n_out, 71);
  // Power-of-two weights make every product exact, so fused and unfused multiply-add agree
  // and the naive loop must match bit for bit.
  std::vector<float> wv(m);
  for (int64_t i = 0; i < m; ++i) wv[i] = std::ldexp(1.0f, static_cast<int>(rng_u32(7, 72, i) % 5) - 2) * (i % 2 ? -1.0f : 1.0f);
  Tensor w = floats({m}, wv);
  std::vector<float> results[3];
  for (int run = 0; run < 3; ++run) {
    with_threads(run == 0 ? 1 : 2, [&] {
      Tensor out = Tensor::zeros({n_out, d}, DType::kF32);
      ops::scatter_add_rows_forward(out, y, idx, w);
      results[run] = as_vec(out);
    });
  }
  EXPECT_EQ(results[0], results[1]);
  EXPECT_EQ(results[1], results[2]);
  EXPECT_EQ(results[0], naive_scatter(as_vec(y), to_ints(idx), wv, n_out, d));

  // Random weights: still bitwise equal across thread counts.
  Tensor wr = random_tensor({m}, 73);
  std::vector<float> r1, r2;
  with_threads(1, [&] {
    Tensor out = Tensor::zeros({n_out, d}, DType::kF32);
    ops::scatter_add_rows_forward(out, y, idx, wr);
    r1 = as_vec(out);
  });
  with_threads(2, [&] {
    Tensor out = Tensor::zeros({n_out, d}, DType::kF32);
    ops::scatter_add_rows_forward(out, y, idx, wr);
    r2 = as_vec(out);
  });
  EXPECT_EQ(r1, r2);
}

TEST(ScatterAddRows, BackwardMatchesNaive) {
  const int64_t m = 9, d = 21, n_out = 4;
  Tensor y = random_tensor({m, d}, 74), w = random_tensor({m}, 75), g = random_tensor({n_out, d}, 76);
  Tensor idx = random_ids(m, n_out, 77);
  Tensor dy = Tensor::empty({m, d}, DType::kF32), dw = Tensor::empty({m}, DType::kF32);
  ops::scatter_add_rows_backward(dy, dw, g, y, idx, w);
  std::vector<float> yv = as_vec(y), wv = as_vec(w), gv = as_vec(g), dyv = as_vec(dy), dwv = as_vec(dw);
  std::vector<int32_t> iv = to_ints(idx);
  for (int64_t r = 0; r < m; ++r) {
    double dot = 0;
    for (int64_t i = 0; i < d; ++i) {
      EXPECT_EQ(dyv[r * d + i], wv[r] * gv[iv[r] * d + i]);
      dot += double(gv[iv[r] * d + i]) * yv[r * d + i];
    }
    EXPECT_NEAR(dwv[r], dot, 1e-5);
  }
}

TEST(GatherRows, ForwardCopiesAndBackwardMatchesNaive) {
  const int64_t n = 300, d = 70, m = 1000;  // ~3.3 gathers per source row
  Tensor x = random_tensor({n, d}, 80), idx = random_ids(m, n, 81), g = random_tensor({m, d}, 82);
  Tensor out = Tensor::empty({m, d}, DType::kF32);
  ops::gather_rows_forward(out, x, idx);
  std::vector<float> xv = as_vec(x), ov = as_vec(out);
  std::vector<int32_t> iv = to_ints(idx);
  for (int64_t r = 0; r < m; ++r)
    ASSERT_TRUE(std::equal(ov.begin() + r * d, ov.begin() + (r + 1) * d, xv.begin() + iv[r] * d)) << r;
  Tensor dx = Tensor::zeros({n, d}, DType::kF32);
  ops::gather_rows_backward(dx, g, idx);
  EXPECT_EQ(as_vec(dx), naive_scatter(as_vec(g), iv, {}, n, d));
}

TEST(Embedding, ForwardAndBackwardMatchNaiveAccumulation) {
  // A small vocabulary (counting-sort bucketing) and a large one (sorted keys).
  for (int32_t v : {50, 20000}) {
    const int64_t n = 2048, d = 32;
    Tensor table = random_tensor({v, d}, 90), ids = random_ids(n, std::min(v, 64), 91);
    Tensor out = Tensor::empty({n, d}, DType::kF32), g = random_tensor({n, d}, 92);
    ops::embedding_forward(out, table, ids);
    std::vector<int32_t> iv = to_ints(ids);
    std::vector<float> tv = as_vec(table), ov = as_vec(out);
    for (int64_t r = 0; r < n; ++r)
      ASSERT_TRUE(std::equal(ov.begin() + r * d, ov.begin() + (r + 1) * d, tv.begin() + iv[r] * d));
    std::vector<float> by_threads[2];
    for (int t = 1; t <= 2; ++t) {
      with_threads(t, [&] {
        Tensor dtable = Tensor::zeros({v, d}, DType::kF32);
        ops::embedding_backward(dtable, g, ids);
        by_threads[t - 1] = as_vec(dtable);
      });
    }
    EXPECT_EQ(by_threads[0], naive_scatter(as_vec(g), iv, {}, v, d)) << "V=" << v;
    EXPECT_EQ(by_threads[0], by_threads[1]) << "V=" << v;
  }
}

TEST(NnAutograd, FlattensLeadingDimsAndRestoresShapes) {
  ag::Var x(random_tensor({2, 3, 8}, 100), true), w(random_tensor({8}, 101), true);
  EXPECT_EQ(ag::rmsnorm(x, w, 1e-5f).shape(), (Shape{2, 3, 8}));
  EXPECT_EQ(ag::softmax(x).shape(), (Shape{2, 3, 8}));
  EXPECT_EQ(ag::swiglu(x, x).shape(), (Shape{2, 3, 8}));
  ag::Var table(random_tensor({10, 4}, 102), true);
  EXPECT_EQ(ag::embedding(table, ints({2, 3}, {1, 2, 3, 4, 5, 6})).shape(), (Shape{2, 3, 4}));
  ag::TopK tk = ag::topk(ag::Var(random_tensor({5, 16}, 103)), 2);
  EXPECT_EQ(tk.values.shape(), (Shape{5, 2}));
  EXPECT_EQ(tk.indices.shape(), (Shape{5, 2}));
  // Only the input that requires grad receives one.
  ag::Var y(random_tensor({4, 3}, 104), true), wt(random_tensor({4}, 105), false);
  ag::backward(ag::sum(ag::scatter_add_rows(y, ints({4}, {0, 1, 0, 1}), wt, 2)));
  EXPECT_TRUE(y.grad().defined());
  EXPECT_FALSE(wt.grad().defined());
}

}  // namespace
}  // namespace cmoe
