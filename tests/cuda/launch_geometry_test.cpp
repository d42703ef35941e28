// launch_geometry_test.cpp — the CUDA kernels' launch shapes (core/cuda/launch_geometry.h), on
// the CPU: empty inputs launch nothing, grids stay within CUDA's limits and, with the kernels'
// loops (grid-stride or chunked), cover every element exactly once.
#include <set>

#include "core/cuda/launch_geometry.h"
#include "gtest/gtest.h"

namespace cmoe::cuda_geom {
namespace {

const int64_t kSizes[] = {0, 1, 31, 32, 255, 256, 257, 4095, 65536, 1 << 20, (int64_t{1} << 31) + 7};

// The elements a grid-stride loop visits with `blocks` blocks of `threads`.
int64_t grid_stride_visits(int64_t n, int64_t blocks, int64_t threads) {
  int64_t visited = 0;
  for (int64_t b = 0; b < blocks; ++b)
    for (int64_t t = 0; t < threads; ++t)
      for (int64_t i = b * threads + t; i < n; i += blocks * threads) ++visited;
  return visited;
}

TEST(LaunchGeometry, Grid1dCoversAndCaps) {
  for (int64_t n : kSizes) {
    const int64_t g = grid_1d(n);
    EXPECT_EQ(g == 0, n == 0) << n;
    EXPECT_LE(g, kMaxBlocks);
    if (n > 0 && n < (1 << 22)) {
      EXPECT_EQ(grid_stride_visits(n, g, kThreads), n) << n;
    }
    // Never more blocks than elements need.
    if (n > 0) {
      EXPECT_LE((g - 1) * kThreads, n);
    }
  }
}

TEST(LaunchGeometry, RowThreadsArePowersOfTwoWarps) {
  for (int64_t cols : {int64_t{0}, int64_t{1}, int64_t{64}, int64_t{300}, int64_t{768}, int64_t{50304}}) {
    const int t = row_threads(cols);
    EXPECT_GE(t, kWarp);
    EXPECT_LE(t, kThreads);
    EXPECT_EQ(t & (t - 1), 0) << t;
    EXPECT_EQ(t % kWarp, 0);
    if (cols >= 4 * kThreads) {
      EXPECT_EQ(t, kThreads);
    }
  }
  EXPECT_EQ(row_blocks(0), 0);
  EXPECT_EQ(row_blocks(7), 7);
  EXPECT_EQ(row_blocks(int64_t{1} << 30), kMaxBlocks);
  EXPECT_EQ(warp_row_blocks(0), 0);
  EXPECT_EQ(warp_row_blocks(1), 1);
  EXPECT_EQ(warp_row_blocks(kRowsPerWarpBlock + 1), 2);
}

TEST(LaunchGeometry, ColumnSumChunksPartitionTheRows) {
  for (int64_t rows : {int64_t{0}, int64_t{1}, int64_t{63}, int64_t{64}, int64_t{65}, int64_t{16384},
                       int64_t{1} << 26}) {
    const int64_t chunks = colsum_chunks(rows), per = colsum_rows_per_chunk(rows);
    EXPECT_EQ(chunks == 0, rows == 0);
    EXPECT_LE(chunks, kMaxGridY);
    if (rows == 0) continue;
    // Chunk c covers [c * per, min(rows, (c + 1) * per)): together exactly the rows, none empty.
    EXPECT_GE(chunks * per, rows) << rows;
    EXPECT_LT((chunks - 1) * per, rows) << rows;
  }
  EXPECT_EQ(colsum_col_blocks(0), 0);
  EXPECT_EQ(colsum_col_blocks(1), 1);
  EXPECT_EQ(colsum_col_blocks(kThreads + 1), 2);
}

TEST(LaunchGeometry, AttentionTilesAndSharedMemory) {
  EXPECT_EQ(attn_tiles(0), 0);
  EXPECT_EQ(attn_tiles(1), 1);
  EXPECT_EQ(attn_tiles(64), 1);
  EXPECT_EQ(attn_tiles(2048), 32);
  EXPECT_EQ(attn_head_bucket(1), 64);
  EXPECT_EQ(attn_head_bucket(64), 64);
  EXPECT_EQ(attn_head_bucket(65), 128);
  EXPECT_EQ(attn_head_bucket(128), 128);
  // The 16 x 16 thread layout of the kernels: 4 score rows and head-dim / 16 columns per thread.
  EXPECT_EQ(kAttnThreads, 256);
  EXPECT_EQ(kAttnTile, 4 * 16);
  // Within the opt-in shared memory of sm_80 (163 KiB), and so of sm_90 (227 KiB).
  for (int bucket : {64, 128}) {
    EXPECT_LE(attn_forward_smem(bucket), 163 * 1024) << bucket;
    EXPECT_LE(attn_backward_smem(bucket), 163 * 1024) << bucket;
  }
  EXPECT_EQ(attn_forward_smem(64), (3 * 64 * 65 + 64 * 65) * 4);
}

TEST(LaunchGeometry, MultiTensorChunks) {
  EXPECT_EQ(multi_tensor_chunks(0), 0);
  EXPECT_EQ(multi_tensor_chunks(1), 1);
  EXPECT_EQ(multi_tensor_chunks(kMultiTensorChunk), 1);
  EXPECT_EQ(multi_tensor_chunks(kMultiTensorChunk + 1), 2);
}

}  // namespace
}  // namespace cmoe::cuda_geom
