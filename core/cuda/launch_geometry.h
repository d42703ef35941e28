// launch_geometry.h — the launch shapes of the CUDA plugin's kernels, as plain functions.
//
// The plugin (nvcc, C++17) launches with these, and the host side sizes kernels' scratch with the
// same functions (a column-sum's f64 partials, the multi-tensor chunk lists), so both agree by
// construction; tests/cuda/launch_geometry_test.cpp checks every shape class on the CPU —
// empty inputs launch nothing, grids stay within the hardware limits and cover every element.
// No CUDA and no cmoe types here.
#pragma once

#include <cstdint>

// Callable from host and device code (the kernels read the same shapes).
#if defined(__CUDACC__)
#define CMOE_GEOM_FN __host__ __device__ constexpr
#else
#define CMOE_GEOM_FN constexpr
#endif

namespace cmoe::cuda_geom {

inline constexpr int kThreads = 256;          // threads of the element-wise and row kernels
inline constexpr int64_t kMaxBlocks = 4096;   // grid-stride kernels: enough to fill any GPU
inline constexpr int64_t kMaxGridY = 65535;   // CUDA's limit on gridDim.y and gridDim.z
inline constexpr int kWarp = 32;

CMOE_GEOM_FN int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
CMOE_GEOM_FN int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

// Grid-stride 1-D kernels over n elements: blocks of kThreads, at most kMaxBlocks; 0 = no launch.
CMOE_GEOM_FN int64_t grid_1d(int64_t n) { return n <= 0 ? 0 : min64(ceil_div(n, kThreads), kMaxBlocks); }

// Row kernels (rmsnorm, cross-entropy rows, row dots): one block per row (the grid strides over
// rows past kMaxBlocks), its threads striding over the columns: a power of two from a warp to
// kThreads, about cols / 4 (so short rows do not leave most threads idle).
CMOE_GEOM_FN int row_threads(int64_t cols) {
  int t = kWarp;
  while (t < kThreads && t * 4 < cols) t *= 2;
  return t;
}
CMOE_GEOM_FN int64_t row_blocks(int64_t rows) { return rows <= 0 ? 0 : min64(rows, kMaxBlocks); }

// Warp-per-row kernels (router rows of E <= a few hundred): kThreads / kWarp rows per block.
inline constexpr int64_t kRowsPerWarpBlock = kThreads / kWarp;
CMOE_GEOM_FN int64_t warp_row_blocks(int64_t rows) {
  return rows <= 0 ? 0 : min64(ceil_div(rows, kRowsPerWarpBlock), kMaxBlocks);
}

// Column sums (bias and norm-weight gradients): rows split into chunks of kColSumRows, each
// chunk's column sums in f64 into partial (chunks, cols), then summed over chunks in order —
// deterministic for any GPU. Grid (ceil(cols / kThreads), chunks), chunks <= kMaxGridY.
inline constexpr int64_t kColSumRows = 64;
// Rows per chunk: kColSumRows, or more when that would need more than kMaxGridY chunks.
CMOE_GEOM_FN int64_t colsum_rows_per_chunk(int64_t rows) {
  if (rows <= 0) return 0;
  const int64_t by_rows = ceil_div(rows, kColSumRows);
  return ceil_div(rows, by_rows <= kMaxGridY ? by_rows : kMaxGridY);
}
// Chunks, none of them empty.
CMOE_GEOM_FN int64_t colsum_chunks(int64_t rows) {
  return rows <= 0 ? 0 : ceil_div(rows, colsum_rows_per_chunk(rows));
}
CMOE_GEOM_FN int64_t colsum_col_blocks(int64_t cols) { return cols <= 0 ? 0 : ceil_div(cols, kThreads); }

// Single-block reductions (sum, z-loss): one block of kReduceThreads, f64 partials combined in
// a fixed tree, so the result is the same on every run.
inline constexpr int kReduceThreads = 1024;

// Fused attention: tiles of kAttnTile queries (forward, dq) or keys (dk/dv) per block of
// kAttnThreads threads, one block per (tile, batch * head) with the heads in gridDim.y.
inline constexpr int kAttnTile = 64;
inline constexpr int kAttnThreads = 256;
inline constexpr int kAttnMaxHeadDim = 128;
CMOE_GEOM_FN int64_t attn_tiles(int64_t seq) { return seq <= 0 ? 0 : ceil_div(seq, kAttnTile); }
// Dynamic shared memory of the attention kernels, for a head-dim bucket (64 or 128): forward Q,
// K, V tiles and one score tile; backward four (tile, head-dim) tiles and one score tile. Rows
// are padded by one float against bank conflicts.
CMOE_GEOM_FN int attn_head_bucket(int64_t head_dim) { return head_dim <= 64 ? 64 : kAttnMaxHeadDim; }
CMOE_GEOM_FN int64_t attn_forward_smem(int bucket) {
  return (3 * kAttnTile * (bucket + 1) + kAttnTile * (kAttnTile + 1)) * 4;
}
CMOE_GEOM_FN int64_t attn_backward_smem(int bucket) {
  return (4 * kAttnTile * (bucket + 1) + kAttnTile * (kAttnTile + 1) + 2 * kAttnTile) * 4;
}

// Dispatch counting sort: one block of kSortThreads per expert scans the pairs in order.
inline constexpr int kSortThreads = 1024;

// Multi-tensor kernels (AdamW, squared norms): tensors cut into chunks of at most
// kMultiTensorChunk elements, one block per chunk.
inline constexpr int64_t kMultiTensorChunk = int64_t{1} << 16;
CMOE_GEOM_FN int64_t multi_tensor_chunks(int64_t numel) {
  return numel <= 0 ? 0 : ceil_div(numel, kMultiTensorChunk);
}

}  // namespace cmoe::cuda_geom
