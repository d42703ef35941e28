// linear_test.cpp — matmul, grouped matmul and its weight gradient against naive f64 loops;
// linear and grouped_linear gradient checks; bf16 compute against f32 and against a naive
// product of bf16-rounded inputs.
#include <omp.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "core/ops/linear.h"
#include "core/ops/matmul.h"
#include "gtest/gtest.h"
#include "tests/gradcheck.h"

namespace cmoe {
namespace {
using testing::grad_check;
using testing::random_tensor;

CMOE_GRADCHECK(linear) {
  // 3-D x exercises the flatten / restore of leading dims.
  return grad_check([](auto& v) { return ag::linear(v[0], v[1]); },
                    {random_tensor({2, 3, 5}, 1), random_tensor({4, 5}, 2)}, {true, true});
}
CMOE_GRADCHECK(linear) {
  // Only the weight requires grad: dx must be skipped, dw still right.
  return grad_check([](auto& v) { return ag::linear(v[0], v[1]); },
                    {random_tensor({6, 5}, 3), random_tensor({3, 5}, 4)}, {false, true});
}
CMOE_GRADCHECK(grouped_linear) {
  // Group 1 is empty, group 3 has one row.
  auto offsets =
      std::make_shared<const std::vector<int64_t>>(std::vector<int64_t>{0, 3, 3, 7, 8, 11});
  return grad_check([offsets](auto& v) { return ag::grouped_linear(v[0], v[1], offsets); },
                    {random_tensor({11, 6}, 5), random_tensor({5, 4, 6}, 6)}, {true, true});
}

// ---- naive references (f64) ----

// Element (i, j) of op(x) where x is stored row-major as (rows, cols) before the transpose.
double at(const std::vector<float>& x, int64_t cols, bool trans, int64_t i, int64_t j) {
  return trans ? x[j * cols + i] : x[i * cols + j];
}

// c (m, n) = alpha * op(a) @ op(b) + beta * c0
std::vector<double> naive_matmul(const std::vector<float>& a, const std::vector<float>& b,
                                 const std::vector<float>& c0, int64_t m, int64_t n, int64_t k,
                                 bool ta, bool tb, double alpha, double beta) {
  std::vector<double> c(m * n);
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      double s = 0;
      for (int64_t p = 0; p < k; ++p) {
        s += at(a, ta ? m : k, ta, i, p) * at(b, tb ? k : n, tb, p, j);
      }
      c[i * n + j] = alpha * s + (beta != 0 ? beta * c0[i * n + j] : 0.0);
    }
  }
  return c;
}

std::vector<float> round_bf16(std::vector<float> v) {
  for (float& x : v) x = bf16_to_f32(f32_to_bf16(x));
  return v;
}

// max |got - want| / max |want|
double rel_max_err(const std::vector<float>& got, const std::vector<double>& want) {
  EXPECT_EQ(got.size(), want.size());
  double err = 0, scale = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    err = std::max(err, std::abs(got[i] - want[i]));
    scale = std::max(scale, std::abs(want[i]));
  }
  return scale > 0 ? err / scale : err;
}

// ||got - want||_F / ||want||_F
double rel_frobenius(const std::vector<float>& got, const std::vector<float>& want) {
  double num = 0, den = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    num += (double(got[i]) - want[i]) * (double(got[i]) - want[i]);
    den += double(want[i]) * want[i];
  }
  return std::sqrt(num / den);
}

constexpr double kF32Tol = 1e-5;  // f32 accumulation over K <= 64 terms stays far below this

TEST(Matmul, AllTransposeCombosMatchNaive) {
  const int64_t m = 37, n = 29, k = 53;
  for (DType dt : {DType::kF32, DType::kBF16}) {
    for (int ta = 0; ta < 2; ++ta) {
      for (int tb = 0; tb < 2; ++tb) {
        Tensor a = random_tensor(ta ? Shape{k, m} : Shape{m, k}, 10 + ta).to_dtype(dt);
        Tensor b = random_tensor(tb ? Shape{n, k} : Shape{k, n}, 20 + tb).to_dtype(dt);
        Tensor c = Tensor::empty({m, n}, DType::kF32);
        ops::matmul(c, a, b, ta, tb);
        // For bf16, a.to_floats() is exactly the bf16 values, so the reference is exact too.
        auto want = naive_matmul(a.to_floats(), b.to_floats(), {}, m, n, k, ta, tb, 1, 0);
        EXPECT_LT(rel_max_err(c.to_floats(), want), kF32Tol)
            << dtype_name(dt) << " trans_a=" << ta << " trans_b=" << tb;
      }
    }
  }
}

TEST(Matmul, AlphaBeta) {
  const int64_t m = 8, n = 19, k = 33;
  for (auto [alpha, beta] : {std::pair{0.5f, 0.0f}, {1.0f, 1.0f}, {-1.5f, 2.0f}, {1.0f, -0.25f}}) {
    Tensor a = random_tensor({k, m}, 1), b = random_tensor({k, n}, 2);
    Tensor c = random_tensor({m, n}, 3);
    std::vector<float> c0 = c.to_floats();
    ops::matmul(c, a, b, true, false, alpha, beta);
    auto want = naive_matmul(a.to_floats(), b.to_floats(), c0, m, n, k, true, false, alpha, beta);
    EXPECT_LT(rel_max_err(c.to_floats(), want), kF32Tol) << "alpha " << alpha << " beta " << beta;
  }
}

TEST(Matmul, EmptyReductionGivesBetaTimesC) {
  Tensor a = Tensor::empty({3, 0}, DType::kF32), b = Tensor::empty({0, 2}, DType::kF32);
  Tensor c = Tensor::from_floats({3, 2}, std::vector<float>{1, 2, 3, 4, 5, 6});
  ops::matmul(c, a, b, false, false, 1.0f, 2.0f);
  EXPECT_EQ(c.to_floats(), (std::vector<float>{2, 4, 6, 8, 10, 12}));
  ops::matmul(c, a, b, false, false);
  EXPECT_EQ(c.to_floats(), (std::vector<float>(6, 0.0f)));
}

TEST(Matmul, RepeatedShapesCreateNoPrimitives) {
  Tensor a = random_tensor({5, 7}, 1), b = random_tensor({7, 3}, 2);
  Tensor c = Tensor::empty({5, 3}, DType::kF32);
  ops::matmul(c, a, b, false, false);
  const int64_t count = ops::matmul_primitive_count();
  for (int i = 0; i < 3; ++i) ops::matmul(c, a, b, false, false);
  EXPECT_EQ(ops::matmul_primitive_count(), count);
}

TEST(Matmul, PeakIsMeasuredOnceAndCached) {
  const double peak = ops::matmul_peak_gflops(DType::kF32);  // ~0.3 s
  EXPECT_GT(peak, 1.0);  // any AVX machine does > 1 GFLOP/s; a broken timer gives 0 or inf
  EXPECT_TRUE(std::isfinite(peak));
  EXPECT_EQ(ops::matmul_peak_gflops(DType::kF32), peak);
}

// Offsets with an empty group (1), a one-row group (3) and an empty last group (5).
const std::vector<int64_t> kOffsets = {0, 7, 7, 20, 21, 33, 33};

TEST(GroupedMatmul, MatchesPerSegmentNaive) {
  const int64_t g_count = 6, rows = 33, k = 24, n = 17;
  for (DType dt : {DType::kF32, DType::kBF16}) {
    for (int tw = 0; tw < 2; ++tw) {
      Tensor a = random_tensor({rows, k}, 1).to_dtype(dt);
      Tensor w = random_tensor(tw ? Shape{g_count, n, k} : Shape{g_count, k, n}, 2).to_dtype(dt);
      Tensor c = Tensor::empty({rows, n}, DType::kF32);
      ops::grouped_matmul(c, a, w, kOffsets, tw);
      std::vector<float> af = a.to_floats(), wf = w.to_floats(), got = c.to_floats();
      for (int64_t g = 0; g < g_count; ++g) {
        const int64_t r0 = kOffsets[g], seg = kOffsets[g + 1] - r0;
        if (seg == 0) continue;
        std::vector<float> ag(af.begin() + r0 * k, af.begin() + (r0 + seg) * k);
        std::vector<float> wg(wf.begin() + g * k * n, wf.begin() + (g + 1) * k * n);
        std::vector<float> cg(got.begin() + r0 * n, got.begin() + (r0 + seg) * n);
        EXPECT_LT(rel_max_err(cg, naive_matmul(ag, wg, {}, seg, n, k, false, tw, 1, 0)), kF32Tol)
            << dtype_name(dt) << " trans_w=" << tw << " group " << g;
      }
    }
  }
}

// grouped_matmul and grouped_matmul_grad_w use one runtime-dim primitive for all segment
// sizes: new sizes create no primitives after the first call.
TEST(GroupedMatmul, SegmentSizesReusePrimitives) {
  const int64_t rows = 40, k = 12, n = 10;
  const std::vector<std::vector<int64_t>> offsets = {
      {0, 5, 25, 40}, {0, 13, 14, 40}, {0, 0, 39, 40}};
  for (DType dt : {DType::kF32, DType::kBF16}) {
    Tensor a = random_tensor({rows, k}, 1).to_dtype(dt);
    Tensor w = random_tensor({3, n, k}, 2).to_dtype(dt);
    Tensor dc = random_tensor({rows, n}, 3).to_dtype(dt);
    Tensor c = Tensor::empty({rows, n}, DType::kF32), dw = Tensor::empty({3, n, k}, DType::kF32);
    auto step = [&](const std::vector<int64_t>& off) {
      ops::grouped_matmul(c, a, w, off, true);
      ops::grouped_matmul_grad_w(dw, a, dc, off, true, false);
    };
    step(offsets[0]);
    const int64_t after_first = ops::matmul_primitive_count();
    step(offsets[1]);
    step(offsets[2]);
    EXPECT_EQ(ops::matmul_primitive_count(), after_first) << dtype_name(dt);
  }
}

// With several threads the groups are spread over them, one product per thread; a group alone
// runs its product on all threads. Each group's result must not depend on which happens (a
// rank of an expert-parallel run may hold one expert or many): bit for bit, at the sizes of
// cpu-small's sub-experts, forward and weight gradient, f32 and bf16.
TEST(GroupedMatmul, ResultsDoNotDependOnTheSpread) {
  const int threads = omp_get_max_threads();
  omp_set_num_threads(2);  // the spread needs two threads, on any machine (oversubscribed if need be)
  const int64_t k = 256, n = 512;
  const std::vector<int64_t> off = {0, 700, 950, 1262, 1263, 1800};
  const int64_t groups = static_cast<int64_t>(off.size()) - 1, rows = off.back();
  for (DType dt : {DType::kF32, DType::kBF16}) {
    Tensor a = random_tensor({rows, k}, 1).to_dtype(dt);
    Tensor w = random_tensor({groups, n, k}, 2).to_dtype(dt);
    Tensor dc = random_tensor({rows, n}, 3).to_dtype(dt);
    Tensor c = Tensor::empty({rows, n}, DType::kF32), dw = Tensor::empty({groups, n, k}, DType::kF32);
    ops::grouped_matmul(c, a, w, off, true);
    ops::grouped_matmul_grad_w(dw, a, dc, off, true, false);
    for (int64_t g = 0; g < groups; ++g) {
      const int64_t seg = off[g + 1] - off[g];
      const std::vector<int64_t> one = {0, seg};
      Tensor cg = Tensor::empty({seg, n}, DType::kF32), dwg = Tensor::empty({1, n, k}, DType::kF32);
      Tensor wg = w.slice0(g, g + 1);
      ops::grouped_matmul(cg, a.slice0(off[g], off[g + 1]), wg, one, true);
      ops::grouped_matmul_grad_w(dwg, a.slice0(off[g], off[g + 1]), dc.slice0(off[g], off[g + 1]), one, true, false);
      EXPECT_EQ(std::memcmp(cg.raw_data(), c.data<float>() + off[g] * n, cg.nbytes()), 0)
          << dtype_name(dt) << " forward, group " << g;
      EXPECT_EQ(std::memcmp(dwg.raw_data(), dw.data<float>() + g * n * k, dwg.nbytes()), 0)
          << dtype_name(dt) << " weight gradient, group " << g;
    }
  }
  omp_set_num_threads(threads);
}

TEST(GroupedMatmul, GradWMatchesNaive) {
  const int64_t g_count = 6, rows = 33, k = 24, n = 17;
  for (DType dt : {DType::kF32, DType::kBF16}) {
    for (int tw = 0; tw < 2; ++tw) {
      for (int acc = 0; acc < 2; ++acc) {
        Tensor a = random_tensor({rows, k}, 1).to_dtype(dt);
        Tensor dc = random_tensor({rows, n}, 2).to_dtype(dt);
        Tensor dw = random_tensor(tw ? Shape{g_count, n, k} : Shape{g_count, k, n}, 3);
        std::vector<float> dw0 = dw.to_floats();
        ops::grouped_matmul_grad_w(dw, a, dc, kOffsets, tw, acc);
        std::vector<float> af = a.to_floats(), dcf = dc.to_floats(), got = dw.to_floats();
        for (int64_t g = 0; g < g_count; ++g) {
          const int64_t r0 = kOffsets[g], seg = kOffsets[g + 1] - r0;
          std::vector<float> ag(af.begin() + r0 * k, af.begin() + (r0 + seg) * k);
          std::vector<float> dcg(dcf.begin() + r0 * n, dcf.begin() + (r0 + seg) * n);
          std::vector<float> dw0g(dw0.begin() + g * k * n, dw0.begin() + (g + 1) * k * n);
          std::vector<float> dwg(got.begin() + g * k * n, got.begin() + (g + 1) * k * n);
          // dw[g] = a_g^T dc_g (K, N) or dc_g^T a_g (N, K), plus the old dw[g] when accumulating.
          auto want = tw ? naive_matmul(dcg, ag, dw0g, n, k, seg, true, false, 1, acc)
                         : naive_matmul(ag, dcg, dw0g, k, n, seg, true, false, 1, acc);
          EXPECT_LT(rel_max_err(dwg, want), kF32Tol) << dtype_name(dt) << " trans_w=" << tw
                                                     << " accumulate=" << acc << " group " << g;
        }
      }
    }
  }
}

// bf16 compute rounds x and w (and dout) once, then accumulates exactly in f32: against a
// naive f64 product of the rounded inputs the error is f32 accumulation error only (1e-5).
// Against the f32 layer the error is the bf16 rounding of the inputs, 2^-9 relative per
// element, which averages to well under 1e-2 in relative Frobenius norm.
constexpr double kBf16VsRoundedTol = 1e-5;
constexpr double kBf16VsF32FrobTol = 1e-2;

TEST(Linear, Bf16ForwardAndBackward) {
  const int64_t n = 29, k = 48, m = 21;
  Tensor x = random_tensor({n, k}, 1), w = random_tensor({m, k}, 2);
  Tensor dout = random_tensor({n, m}, 3);
  std::vector<float> xr = round_bf16(x.to_floats()), wr = round_bf16(w.to_floats());
  std::vector<float> doutr = round_bf16(dout.to_floats());

  Tensor out16 = Tensor::empty({n, m}, DType::kF32), out32 = Tensor::empty({n, m}, DType::kF32);
  ops::linear_forward(out16, x, w, DType::kBF16);
  ops::linear_forward(out32, x, w, DType::kF32);
  EXPECT_LT(rel_max_err(out16.to_floats(), naive_matmul(xr, wr, {}, n, m, k, false, true, 1, 0)),
            kBf16VsRoundedTol);
  EXPECT_LT(rel_frobenius(out16.to_floats(), out32.to_floats()), kBf16VsF32FrobTol);

  Tensor dx16 = Tensor::empty({n, k}, DType::kF32), dx32 = Tensor::empty({n, k}, DType::kF32);
  Tensor dw16 = Tensor::zeros({m, k}, DType::kF32), dw32 = Tensor::zeros({m, k}, DType::kF32);
  ops::linear_backward(dx16, dw16, dout, x, w, DType::kBF16, /*accumulate_dw=*/true);
  ops::linear_backward(dx32, dw32, dout, x, w, DType::kF32, /*accumulate_dw=*/true);
  EXPECT_LT(rel_max_err(dx16.to_floats(), naive_matmul(doutr, wr, {}, n, k, m, false, false, 1, 0)),
            kBf16VsRoundedTol);
  EXPECT_LT(rel_max_err(dw16.to_floats(), naive_matmul(doutr, xr, {}, m, k, n, true, false, 1, 0)),
            kBf16VsRoundedTol);
  EXPECT_LT(rel_frobenius(dx16.to_floats(), dx32.to_floats()), kBf16VsF32FrobTol);
  EXPECT_LT(rel_frobenius(dw16.to_floats(), dw32.to_floats()), kBf16VsF32FrobTol);

  // dw accumulates: a second backward doubles it.
  std::vector<float> once = dw32.to_floats();
  Tensor no_dx;
  ops::linear_backward(no_dx, dw32, dout, x, w, DType::kF32, /*accumulate_dw=*/true);
  std::vector<float> twice = dw32.to_floats();
  for (size_t i = 0; i < once.size(); ++i) EXPECT_FLOAT_EQ(twice[i], 2 * once[i]);

  // Without accumulate_dw, dw's old contents (NaN here) are overwritten, not read.
  for (DType dt : {DType::kF32, DType::kBF16}) {
    Tensor dw_new = Tensor::full({m, k}, std::numeric_limits<float>::quiet_NaN());
    ops::linear_backward(no_dx, dw_new, dout, x, w, dt, /*accumulate_dw=*/false);
    EXPECT_EQ(dw_new.to_floats(), (dt == DType::kF32 ? once : dw16.to_floats())) << dtype_name(dt);
  }
}

TEST(Linear, GroupedBf16MatchesF32) {
  const int64_t rows = 33, k = 24, m = 17, g_count = 6;
  Tensor x = random_tensor({rows, k}, 1), w = random_tensor({g_count, m, k}, 2);
  Tensor dout = random_tensor({rows, m}, 3);
  Tensor out16 = Tensor::empty({rows, m}, DType::kF32);
  Tensor out32 = Tensor::empty({rows, m}, DType::kF32);
  ops::grouped_linear_forward(out16, x, w, kOffsets, DType::kBF16);
  ops::grouped_linear_forward(out32, x, w, kOffsets, DType::kF32);
  EXPECT_LT(rel_frobenius(out16.to_floats(), out32.to_floats()), kBf16VsF32FrobTol);
  Tensor dx16 = Tensor::empty({rows, k}, DType::kF32), dx32 = Tensor::empty({rows, k}, DType::kF32);
  Tensor dw16 = Tensor::zeros({g_count, m, k}, DType::kF32);
  Tensor dw32 = Tensor::zeros({g_count, m, k}, DType::kF32);
  ops::grouped_linear_backward(dx16, dw16, dout, x, w, kOffsets, DType::kBF16, /*accumulate_dw=*/true);
  ops::grouped_linear_backward(dx32, dw32, dout, x, w, kOffsets, DType::kF32, /*accumulate_dw=*/true);
  EXPECT_LT(rel_frobenius(dx16.to_floats(), dx32.to_floats()), kBf16VsF32FrobTol);
  EXPECT_LT(rel_frobenius(dw16.to_floats(), dw32.to_floats()), kBf16VsF32FrobTol);

  // Without accumulate_dw, dw's old contents (NaN here) are overwritten, not read: the same bits
  // as accumulating into zeros, experts with no rows included (they get zeros).
  for (DType dt : {DType::kF32, DType::kBF16}) {
    Tensor dw_new = Tensor::full({g_count, m, k}, std::numeric_limits<float>::quiet_NaN());
    Tensor no_dx;
    ops::grouped_linear_backward(no_dx, dw_new, dout, x, w, kOffsets, dt, /*accumulate_dw=*/false);
    EXPECT_EQ(dw_new.to_floats(), (dt == DType::kF32 ? dw32 : dw16).to_floats()) << dtype_name(dt);
  }
}

TEST(Linear, AutogradRestoresLeadingDims) {
  ag::Var x(random_tensor({2, 3, 5}, 1)), w(random_tensor({4, 5}, 2), true);
  ag::Var out = ag::linear(x, w, DType::kBF16);
  EXPECT_EQ(out.shape(), (Shape{2, 3, 4}));
  ag::backward(ag::sum(out));
  EXPECT_TRUE(w.grad().defined());
  EXPECT_FALSE(x.grad().defined());
}

}  // namespace
}  // namespace cmoe
