// routing_test.cpp — the router's and dispatcher's kernels (core/ops/routing.h): gradient checks
// of routing_weights and z_loss for the op harness, and the selection, load and counting-sort
// kernels against rules written out here.
#include <algorithm>
#include <cmath>
#include <vector>

#include "core/ops/routing.h"
#include "gtest/gtest.h"
#include "tests/gradcheck.h"

namespace cmoe {
namespace {
using testing::grad_check;
using testing::random_tensor;

Tensor ints(const Shape& s, std::vector<int32_t> v) { return Tensor::from_ints(s, v); }
Tensor floats(const Shape& s, std::vector<float> v) { return Tensor::from_floats(s, v); }
std::vector<int32_t> as_ints(const Tensor& t) { return {t.data<int32_t>(), t.data<int32_t>() + t.numel()}; }

// Positive probabilities-like inputs (away from 0) so the renormalisation is smooth.
Tensor positive(const Shape& s, uint64_t stream) {
  Tensor t = random_tensor(s, stream, 0.2f);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = 0.5f + std::fabs(t.data<float>()[i]);
  return t;
}

CMOE_GRADCHECK(routing_weights) {
  // Row 1 has an empty slot (-1): its weight is 0 and it sends no gradient.
  Tensor idx = ints({3, 2}, {0, 3, 2, -1, 1, 0});
  return grad_check([idx](auto& v) { return ag::routing_weights(v[0], idx, true); }, {positive({3, 4}, 40)},
                    {true});
}

CMOE_GRADCHECK(routing_weights) {
  Tensor idx = ints({2, 2}, {1, 2, 3, 0});
  return grad_check([idx](auto& v) { return ag::routing_weights(v[0], idx, false); }, {positive({2, 4}, 41)},
                    {true});
}

CMOE_GRADCHECK(z_loss) {
  return grad_check([](auto& v) { return ag::z_loss(v[0]); }, {random_tensor({5, 6}, 42)}, {true});
}

TEST(Routing, WeightsRenormaliseOverChosen) {
  Tensor probs = floats({2, 3}, {0.5f, 0.3f, 0.2f, 0.1f, 0.1f, 0.8f});
  Tensor idx = ints({2, 2}, {0, 2, 2, -1});
  Tensor w = Tensor::empty({2, 2}, DType::kF32), z = Tensor::empty({2}, DType::kF32);
  ops::routing_weights_forward(w, z, probs, idx, true);
  EXPECT_FLOAT_EQ(w.data<float>()[0], 0.5f / 0.7f);
  EXPECT_FLOAT_EQ(w.data<float>()[1], 0.2f / 0.7f);
  EXPECT_FLOAT_EQ(w.data<float>()[2], 1.0f);
  EXPECT_EQ(w.data<float>()[3], 0.0f);
}

TEST(Routing, TopkOrderTiesBiasAndDisableTop1) {
  // Row 0: ties between experts 1 and 3 go to 1; row 1: the bias lifts expert 0 into the top 2;
  // row 2: disable_top1 drops the argmax (expert 2) though the bias does not favour it.
  Tensor probs = floats({3, 4}, {0.1f, 0.3f, 0.3f, 0.3f, 0.4f, 0.3f, 0.2f, 0.1f, 0.2f, 0.1f, 0.6f, 0.1f});
  Tensor idx = Tensor::empty({3, 2}, DType::kI32);
  ops::router_topk(idx, probs, Tensor(), false);
  EXPECT_EQ(as_ints(idx), (std::vector<int32_t>{1, 2, 0, 1, 2, 0}));
  Tensor bias = floats({4}, {0.0f, -0.25f, 0.0f, 0.0f});
  ops::router_topk(idx, probs, bias, false);
  EXPECT_EQ(as_ints(idx), (std::vector<int32_t>{2, 3, 0, 2, 2, 0}));
  ops::router_topk(idx, probs, Tensor(), true);
  EXPECT_EQ(as_ints(idx), (std::vector<int32_t>{2, 3, 1, 2, 0, 1}));
}

TEST(Routing, TopkPadsShortRows) {
  Tensor probs = floats({1, 2}, {0.7f, 0.3f});
  Tensor idx = Tensor::empty({1, 2}, DType::kI32);
  ops::router_topk(idx, probs, Tensor(), true);  // one candidate left for two slots
  EXPECT_EQ(as_ints(idx), (std::vector<int32_t>{1, -1}));
}

TEST(Routing, ToppKeepsUntilMassExceeded) {
  Tensor probs = floats({2, 4}, {0.5f, 0.2f, 0.2f, 0.1f, 0.25f, 0.25f, 0.25f, 0.25f});
  Tensor idx = ops::router_topp(probs, 0.6f, false);
  ASSERT_EQ(idx.dim(1), 3);  // row 1 needs three experts to pass 0.6
  EXPECT_EQ(as_ints(idx), (std::vector<int32_t>{0, 1, -1, 0, 1, 2}));
  Tensor idx2 = ops::router_topp(probs, 0.3f, true);
  EXPECT_EQ(as_ints(idx2), (std::vector<int32_t>{1, 2, 1, 2}));
}

TEST(Routing, HashChoicesAreDistinctAndStable) {
  Tensor ids = ints({4}, {0, 7, 7, 1000});
  Tensor idx = Tensor::empty({4, 3}, DType::kI32);
  ops::router_hash(idx, ids, 5, 9);
  for (int n = 0; n < 4; ++n) {
    std::vector<int32_t> row(idx.data<int32_t>() + 3 * n, idx.data<int32_t>() + 3 * n + 3);
    std::sort(row.begin(), row.end());
    EXPECT_EQ(std::unique(row.begin(), row.end()), row.end());
    for (int32_t e : row) EXPECT_TRUE(e >= 0 && e < 5);
  }
  for (int j = 0; j < 3; ++j) EXPECT_EQ(idx.data<int32_t>()[3 + j], idx.data<int32_t>()[6 + j]);  // same id
}

TEST(Routing, ExpertLoadCountsAndSums) {
  Tensor idx = ints({3, 2}, {0, 2, 2, -1, 1, 2});
  Tensor probs = floats({3, 3}, {0.5f, 0.25f, 0.25f, 0.0f, 0.5f, 0.5f, 1.0f, 0.0f, 0.0f});
  Tensor counts = Tensor::empty({3}, DType::kI64), psum = Tensor::empty({3}, DType::kF32);
  ops::expert_load(counts, psum, idx, probs);
  EXPECT_EQ(std::vector<int64_t>(counts.data<int64_t>(), counts.data<int64_t>() + 3),
            (std::vector<int64_t>{1, 1, 3}));
  EXPECT_EQ(psum.to_floats(), (std::vector<float>{1.5f, 0.75f, 0.75f}));
}

TEST(Routing, DispatchSortIsStableAndDropsPastCapacity) {
  // Expert 0 is chosen by pairs 0, 2, 4, 5 (tokens 0, 1, 2, 2); capacity 2 keeps pairs 0 and 2.
  Tensor idx = ints({3, 2}, {0, 1, 0, -1, 0, 0});
  const std::vector<int64_t> offsets = {0, 2, 3};  // kept: expert 0 two, expert 1 one
  Tensor tok = Tensor::empty({3}, DType::kI32), pair = Tensor::empty({3}, DType::kI32);
  ops::dispatch_sort(tok, pair, idx, offsets, 2);
  EXPECT_EQ(as_ints(tok), (std::vector<int32_t>{0, 1, 0}));
  EXPECT_EQ(as_ints(pair), (std::vector<int32_t>{0, 2, 1}));
}

}  // namespace
}  // namespace cmoe
