// grouped_gemm_test.cpp — the problem lists of the grouped expert GEMMs (core/cuda/grouped_gemm.h)
// and the multi-tensor chunk lists (core/cuda/multi_tensor.h), on the CPU: sizes, operand and
// output addresses per segment, empty and very uneven segments, zero inner dimensions.
#include <cstdint>
#include <vector>

#include "core/cuda/grouped_gemm.h"
#include "core/cuda/launch_geometry.h"
#include "core/cuda/multi_tensor.h"
#include "gtest/gtest.h"

namespace cmoe::cuda {
namespace {

// Fake device bases, far apart: offsets are checked as byte distances from them.
char* const kA = reinterpret_cast<char*>(uintptr_t{0x10000000});
char* const kB = reinterpret_cast<char*>(uintptr_t{0x20000000});
char* const kC = reinterpret_cast<char*>(uintptr_t{0x30000000});

int64_t off(const void* p, const char* base) { return static_cast<const char*>(p) - base; }

// Segments: 0, 13, 0, 1, 50 rows (R = 64), M = 40, K = 24.
const std::vector<int64_t> kOffsets = {0, 0, 13, 13, 14, 64};

TEST(GroupedGemmPlan, ForwardSkipsEmptySegments) {
  const GroupedGemmPlan p = grouped_gemm_plan(GroupedGemmKind::kForward, kOffsets, 40, 24, kA, kB, kC, 2);
  ASSERT_EQ(p.size(), 3);
  EXPECT_EQ(p.group, (std::vector<int64_t>{1, 3, 4}));
  EXPECT_EQ(p.m, (std::vector<int64_t>{13, 1, 50}));
  EXPECT_EQ(p.n, (std::vector<int64_t>{40, 40, 40}));
  EXPECT_EQ(p.k, (std::vector<int64_t>{24, 24, 24}));
  EXPECT_FALSE(p.trans_a);
  EXPECT_TRUE(p.trans_b);
  EXPECT_EQ(p.beta, 0.0f);
  // x rows from the segment start (bf16: 2 bytes), w[g], out rows (f32).
  EXPECT_EQ(off(p.a[2], kA), 14 * 24 * 2);
  EXPECT_EQ(off(p.b[2], kB), 4 * 40 * 24 * 2);
  EXPECT_EQ(off(p.c[2], kC), 14 * 40 * 4);
  EXPECT_EQ(off(p.a[0], kA), 0);
  EXPECT_EQ(off(p.b[0], kB), 1 * 40 * 24 * 2);
  EXPECT_FALSE(p.zero_output);
}

TEST(GroupedGemmPlan, GradInputAndGradWeight) {
  const GroupedGemmPlan dx = grouped_gemm_plan(GroupedGemmKind::kGradInput, kOffsets, 40, 24, kA, kB, kC, 4);
  ASSERT_EQ(dx.size(), 3);
  EXPECT_EQ(dx.m, (std::vector<int64_t>{13, 1, 50}));
  EXPECT_EQ(dx.n, (std::vector<int64_t>{24, 24, 24}));
  EXPECT_EQ(dx.k, (std::vector<int64_t>{40, 40, 40}));
  EXPECT_FALSE(dx.trans_a || dx.trans_b);
  EXPECT_EQ(off(dx.a[1], kA), 13 * 40 * 4);  // dout rows
  EXPECT_EQ(off(dx.c[1], kC), 13 * 24 * 4);  // dx rows
  const GroupedGemmPlan dw = grouped_gemm_plan(GroupedGemmKind::kGradWeight, kOffsets, 40, 24, kA, kB, kC, 2);
  ASSERT_EQ(dw.size(), 3);
  EXPECT_EQ(dw.m, (std::vector<int64_t>{40, 40, 40}));
  EXPECT_EQ(dw.n, (std::vector<int64_t>{24, 24, 24}));
  EXPECT_EQ(dw.k, (std::vector<int64_t>{13, 1, 50}));  // the reduction runs over the segment
  EXPECT_TRUE(dw.trans_a);
  EXPECT_FALSE(dw.trans_b);
  EXPECT_EQ(dw.beta, 1.0f);  // accumulates; empty segments leave their expert's gradient alone
  EXPECT_EQ(off(dw.b[2], kB), 14 * 24 * 2);       // x rows
  EXPECT_EQ(off(dw.c[2], kC), 4 * 40 * 24 * 4);   // dw[g]
}

TEST(GroupedGemmPlan, AllEmptyAndZeroInnerDims) {
  const std::vector<int64_t> none = {0, 0, 0, 0};
  EXPECT_EQ(grouped_gemm_plan(GroupedGemmKind::kForward, none, 8, 8, kA, kB, kC, 4).size(), 0);
  EXPECT_FALSE(grouped_gemm_plan(GroupedGemmKind::kForward, none, 8, 8, kA, kB, kC, 4).zero_output);
  // K = 0: out = x @ w^T is all zeros, with no problem to compute it.
  const GroupedGemmPlan k0 = grouped_gemm_plan(GroupedGemmKind::kForward, kOffsets, 40, 0, kA, kB, kC, 4);
  EXPECT_EQ(k0.size(), 0);
  EXPECT_TRUE(k0.zero_output);
  const GroupedGemmPlan m0 = grouped_gemm_plan(GroupedGemmKind::kGradInput, kOffsets, 0, 24, kA, kB, kC, 4);
  EXPECT_EQ(m0.size(), 0);
  EXPECT_TRUE(m0.zero_output);
  EXPECT_FALSE(grouped_gemm_plan(GroupedGemmKind::kGradWeight, kOffsets, 40, 0, kA, kB, kC, 4).zero_output);
}

TEST(GroupedGemmPlan, OneGroupIsADenseGemm) {
  const GroupedGemmPlan p = grouped_gemm_plan(GroupedGemmKind::kForward, std::vector<int64_t>{0, 7}, 3, 5, kA, kB, kC, 4);
  ASSERT_EQ(p.size(), 1);
  EXPECT_EQ(p.m[0], 7);
  EXPECT_EQ(p.a[0], kA);
  EXPECT_EQ(p.b[0], kB);
  EXPECT_EQ(p.c[0], kC);
}

TEST(MultiTensorChunks, CutsTensorsInOrderSkippingEmptyOnes) {
  const int64_t C = cuda_geom::kMultiTensorChunk;
  const std::vector<int64_t> numels = {5, 0, 2 * C + 3, C};
  const ChunkList c = multi_tensor_chunks(numels);
  ASSERT_EQ(c.size(), 1 + 3 + 1);
  EXPECT_EQ(c.tensor, (std::vector<int64_t>{0, 2, 2, 2, 3}));
  EXPECT_EQ(c.start, (std::vector<int64_t>{0, 0, C, 2 * C, 0}));
  EXPECT_EQ(c.len, (std::vector<int64_t>{5, C, C, 3, C}));
  EXPECT_EQ(multi_tensor_chunks(std::vector<int64_t>{}).size(), 0);
}

}  // namespace
}  // namespace cmoe::cuda
