// elementwise_test.cpp — add, mul, scale, sum: gradient checks and exact forward values.
#include "gtest/gtest.h"
#include "tests/gradcheck.h"

namespace cmoe {
namespace {
using testing::grad_check;
using testing::random_tensor;

CMOE_GRADCHECK(add) {
  return grad_check([](auto& v) { return ag::add(v[0], v[1]); },
                    {random_tensor({3, 5}, 1), random_tensor({3, 5}, 2)}, {true, true});
}
CMOE_GRADCHECK(mul) {
  return grad_check([](auto& v) { return ag::mul(v[0], v[1]); },
                    {random_tensor({3, 5}, 1), random_tensor({3, 5}, 2)}, {true, true});
}
CMOE_GRADCHECK(scale) {
  return grad_check([](auto& v) { return ag::scale(v[0], -1.5f); }, {random_tensor({7}, 3)}, {true});
}
CMOE_GRADCHECK(scale_rows) {
  return grad_check([](auto& v) { return ag::scale_rows(v[0], v[1]); },
                    {random_tensor({4, 6}, 5), random_tensor({4}, 6)}, {true, true});
}
CMOE_GRADCHECK(add_bias) {
  return grad_check([](auto& v) { return ag::add_bias(v[0], v[1]); },
                    {random_tensor({5, 3}, 7), random_tensor({3}, 8)}, {true, true});
}
CMOE_GRADCHECK(sum) {
  return grad_check([](auto& v) { return ag::sum(v[0]); }, {random_tensor({4, 4}, 4)}, {true});
}

TEST(Elementwise, ForwardValues) {
  Tensor a = Tensor::from_floats({3}, std::vector<float>{1, 2, 3});
  Tensor b = Tensor::from_floats({3}, std::vector<float>{4, 5, 6});
  EXPECT_EQ(ag::add(ag::Var(a), ag::Var(b)).value().to_floats(), (std::vector<float>{5, 7, 9}));
  EXPECT_EQ(ag::mul(ag::Var(a), ag::Var(b)).value().to_floats(), (std::vector<float>{4, 10, 18}));
  EXPECT_EQ(ag::sum(ag::Var(a)).value().to_floats(), (std::vector<float>{6}));
}

}  // namespace
}  // namespace cmoe
