// op_harness_test.cpp — walks the op table (autograd/op_table.h): every differentiable op has
// CPU kernels, a backward and at least one registered gradient check, and every registered check
// passes; every row, differentiable or not, has its CUDA entries (the column is complete). The
// CUDA column's results are checked against the CPU's on a GPU by tests/cuda/cuda_op_harness_test.
#include <set>

#include "autograd/op_table.h"
#include "gtest/gtest.h"
#include "tests/gradcheck.h"

namespace cmoe {
namespace {

TEST(OpHarness, EveryOpHasBackwardAndGradCheck) {
  std::set<std::string> registered;
  for (auto& [name, c] : testing::gradcheck_registry()) registered.insert(name);
  int diff = 0;
  for (const ag::OpInfo& op : ag::op_table()) {
    EXPECT_NE(op.cpu_forward, nullptr) << op.name << " has no CPU forward";
    if (!op.differentiable) continue;
    ++diff;
    EXPECT_NE(op.cpu_backward, nullptr) << op.name << " has no CPU backward";
    EXPECT_TRUE(registered.count(op.name)) << op.name << " has no registered gradient check";
  }
  EXPECT_EQ(diff, ag::kNumDiffOps);
  std::set<std::string> known;
  for (const ag::OpInfo& op : ag::op_table()) known.insert(op.name);
  for (const std::string& n : registered) EXPECT_TRUE(known.count(n)) << n << " is not in the op table";
}

// The table stays complete: a row without a CUDA kernel fails here, on every machine.
TEST(OpHarness, EveryRowHasCudaKernels) {
  int rows = 0;
  for (const ag::OpInfo& op : ag::op_table()) {
    ++rows;
    EXPECT_NE(op.cuda_forward, nullptr) << op.name << " has no CUDA forward";
    if (op.differentiable) {
      EXPECT_NE(op.cuda_backward, nullptr) << op.name << " has no CUDA backward";
    }
    // The CUDA column holds adapters, never the CPU kernels themselves.
    EXPECT_NE(op.cuda_forward, op.cpu_forward) << op.name << ": the CUDA column points at the CPU kernel";
  }
  EXPECT_EQ(rows, ag::kNumOps);
  std::printf("op table: %d rows (%d differentiable), every one with CPU and CUDA kernels\n", ag::kNumOps,
              ag::kNumDiffOps);
}

TEST(OpHarness, KernelsForDevicePicksTheColumn) {
  EXPECT_EQ(&ag::kernels(kCPU), &ag::cpu_kernels());
  EXPECT_EQ(&ag::kernels(cuda_device(0)), &ag::cuda_kernels());
  EXPECT_EQ(ag::cpu_kernels().linear_forward, &ops::linear_forward);
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
