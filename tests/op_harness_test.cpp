// op_harness_test.cpp — walks the op table: every op has CPU kernels, a backward, and at
// least one registered gradient check, and every registered check passes. CUDA coverage is
// printed (it is filled in by the CUDA backend issue).
#include <set>

#include "autograd/op_table.h"
#include "gtest/gtest.h"
#include "tests/gradcheck.h"

namespace cmoe {
namespace {

TEST(OpHarness, EveryOpHasBackwardAndGradCheck) {
  std::set<std::string> registered;
  for (auto& [name, c] : testing::gradcheck_registry()) registered.insert(name);
  int cuda = 0;
  for (const ag::OpInfo& op : ag::op_table()) {
    EXPECT_NE(op.cpu_forward, nullptr) << op.name << " has no CPU forward";
    EXPECT_NE(op.cpu_backward, nullptr) << op.name << " has no CPU backward";
    EXPECT_TRUE(registered.count(op.name)) << op.name << " has no registered gradient check";
    cuda += op.cuda_forward != nullptr && op.cuda_backward != nullptr;
  }
  std::set<std::string> known;
  for (const ag::OpInfo& op : ag::op_table()) known.insert(op.name);
  for (const std::string& n : registered) EXPECT_TRUE(known.count(n)) << n << " is not in the op table";
  std::printf("op table: %d ops, %d with CUDA kernels\n", ag::kNumOps, cuda);
}

TEST(OpHarness, GradientsMatchFiniteDifferences) {
  ASSERT_FALSE(testing::gradcheck_registry().empty());
  for (auto& [name, c] : testing::gradcheck_registry()) {
    std::string err = c();
    EXPECT_EQ(err, "") << "op " << name;
  }
}

}  // namespace
}  // namespace cmoe
