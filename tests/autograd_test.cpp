// autograd_test.cpp — the tape: reuse of a var, no-grad mode, freeing, recomputation,
// multi-root backward (the pipeline-stage entry point).
#include "autograd/ops.h"
#include "gtest/gtest.h"
#include "tests/gradcheck.h"

namespace cmoe {
namespace {
using testing::random_tensor;

TEST(Autograd, DiamondAccumulatesBothPaths) {
  // y = sum(x*x + x) -> dy/dx = 2x + 1; x feeds three uses.
  ag::Var x(Tensor::from_floats({3}, std::vector<float>{1, -2, 0.5f}), true);
  ag::Var y = ag::sum(ag::add(ag::mul(x, x), x));
  ag::backward(y);
  EXPECT_EQ(x.grad().to_floats(), (std::vector<float>{3, -3, 2}));
}

TEST(Autograd, NoGradRecordsNothing) {
  ag::Var x(random_tensor({4}, 1), true);
  ag::NoGradGuard ng;
  ag::Var y = ag::mul(x, x);
  EXPECT_FALSE(y.requires_grad());
  EXPECT_EQ(y.impl()->node, nullptr);
}

TEST(Autograd, BackwardFreesSavedActivations) {
  size_t before = allocator_for(DeviceType::kCPU).bytes_in_use();
  {
    ag::Var x(random_tensor({256, 256}, 1), true);
    ag::Var loss;
    {
      ag::Var h = ag::mul(x, x);
      for (int i = 0; i < 4; ++i) h = ag::mul(h, x);
      loss = ag::sum(h);
    }
    size_t with_graph = allocator_for(DeviceType::kCPU).bytes_in_use();
    ag::backward(loss);
    size_t after_backward = allocator_for(DeviceType::kCPU).bytes_in_use();
    // The five (256 x 256) activations are gone; x, its grad and the scalar loss remain.
    EXPECT_LT(after_backward, with_graph);
    EXPECT_LE(after_backward - before, 2u * 256 * 256 * 4 + 1024);
  }
  EXPECT_EQ(allocator_for(DeviceType::kCPU).bytes_in_use(), before);
}

TEST(Autograd, RecomputeGivesSameGradients) {
  Tensor x0 = random_tensor({8}, 1), w0 = random_tensor({8}, 2);
  auto layer = [](ag::Var x, ag::Var w) { return ag::mul(ag::mul(x, w), ag::add(x, w)); };
  ag::Var x1(x0.clone(), true), w1(w0.clone(), true);
  ag::backward(ag::sum(layer(x1, w1)));
  ag::Var x2(x0.clone(), true), w2(w0.clone(), true);
  ag::Var out = ag::recompute([&](const std::vector<ag::Var>& in) { return layer(in[0], w2); }, {x2, w2});
  EXPECT_EQ(out.value().to_floats(), layer(x1, w1).value().to_floats());
  ag::backward(ag::sum(out));
  EXPECT_EQ(x2.grad().to_floats(), x1.grad().to_floats());
  EXPECT_EQ(w2.grad().to_floats(), w1.grad().to_floats());
}

// A bf16 SwiGLU FFN (as the model builds it) with swiglu's output and input gradients in bf16
// gives the same output and gradients, bit for bit, as with them in f32 and rounded by the
// linears; x also feeds a second path, so its gradient sums an f32 and a matmul gradient.
TEST(Autograd, SwigluBf16IoGivesTheSameBitsAsRoundingInTheLinears) {
  const int64_t n = 37, d = 24, f = 40;
  Tensor x0 = random_tensor({n, d}, 1), w1_0 = random_tensor({f, d}, 2), w3_0 = random_tensor({f, d}, 3),
         w2_0 = random_tensor({d, f}, 4), r = random_tensor({n, d}, 5);
  auto run = [&](DType io) {
    ag::Var x(x0.clone(), true), w1(w1_0.clone(), true), w3(w3_0.clone(), true), w2(w2_0.clone(), true);
    ag::Var h = ag::swiglu(ag::linear(x, w1, DType::kBF16), ag::linear(x, w3, DType::kBF16), io);
    EXPECT_EQ(h.value().dtype(), io);
    ag::Var y = ag::add(ag::linear(h, w2, DType::kBF16), ag::mul(x, x));
    ag::backward(ag::sum(ag::mul(y, ag::Var(r))));
    return std::vector<std::vector<float>>{y.value().to_floats(), x.grad().to_floats(), w1.grad().to_floats(),
                                           w3.grad().to_floats(), w2.grad().to_floats()};
  };
  const auto f32 = run(DType::kF32), b16 = run(DType::kBF16);
  for (size_t i = 0; i < f32.size(); ++i) EXPECT_EQ(f32[i], b16[i]) << "tensor " << i;
}

// cross_entropy given the gradient its backward will get computes the gradients in the forward:
// the same gradients bit for bit as the plain op's; a different gradient is still honoured.
TEST(Autograd, CrossEntropyWithExpectedGradientGivesTheSameGradients) {
  const int64_t N = 10, D = 16, V = 29;
  Tensor h0 = random_tensor({N, D}, 1), w0 = random_tensor({V, D}, 2, 0.5f);
  std::vector<int32_t> t(N);
  for (int64_t n = 0; n < N; ++n) t[n] = n == 3 ? -1 : static_cast<int32_t>((7 * n + 2) % V);
  Tensor targets = Tensor::from_ints({N}, t);
  for (DType dt : {DType::kF32, DType::kBF16}) {
    for (float seed : {0.3f, 0.7f}) {
      const std::string where = std::string(dtype_name(dt)) + " seed " + std::to_string(seed);
      ag::Var h1(h0.clone(), true), w1(w0.clone(), true);
      ag::Var l1 = ag::cross_entropy(h1, w1, targets, 4, dt);
      ag::backward({l1}, {Tensor::full(Shape{}, seed)});
      // Expects 0.3: the first seed uses the forward's gradients, the second recomputes.
      ag::Var h2(h0.clone(), true), w2(w0.clone(), true);
      ag::Var l2 = ag::cross_entropy(h2, w2, targets, 4, dt, /*expected_grad=*/0.3f);
      EXPECT_EQ(l2.value().to_floats(), l1.value().to_floats()) << where;
      ag::backward({l2}, {Tensor::full(Shape{}, seed)});
      EXPECT_EQ(h2.grad().to_floats(), h1.grad().to_floats()) << where;
      EXPECT_EQ(w2.grad().to_floats(), w1.grad().to_floats()) << where;
    }
  }
  // Without a tape nothing is precomputed, and the loss is the same.
  ag::NoGradGuard ng;
  ag::Var h(h0.clone(), true), w(w0.clone(), true);
  EXPECT_EQ(ag::cross_entropy(h, w, targets, 4, DType::kF32, 0.3f).value().to_floats(),
            ag::cross_entropy(h, w, targets, 4, DType::kF32).value().to_floats());
}

TEST(Autograd, StageBackwardFromGivenGradient) {
  // A pipeline stage: input is a detached leaf; backward starts from a received gradient.
  ag::Var in(random_tensor({5}, 3), true);
  ag::Var out = ag::scale(ag::mul(in, in), 3.0f);
  Tensor g = random_tensor({5}, 4);
  ag::backward({out}, {g});
  auto x = in.value().to_floats(), gv = g.to_floats(), dx = in.grad().to_floats();
  for (int i = 0; i < 5; ++i) EXPECT_FLOAT_EQ(dx[i], 6.0f * x[i] * gv[i]);
}

}  // namespace
}  // namespace cmoe
