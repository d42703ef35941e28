// row_scatter.cpp — see row_scatter.h.
#include "core/ops/row_scatter.h"

#include <algorithm>
#include <vector>

#include "core/check.h"

namespace cmoe::ops {

namespace {

__attribute__((target_clones("avx512f", "default")))
void add_scaled_row(float* __restrict o, const float* __restrict s, float w, int64_t d) {
#pragma omp simd
  for (int64_t i = 0; i < d; ++i) o[i] += w * s[i];
}

}  // namespace

void row_scatter_add(float* out, int64_t n_out, const float* src, const int32_t* idx,
                     const float* w, int64_t m_rows, int64_t d, const char* op) {
  if (m_rows == 0 || d == 0) return;
  CMOE_CHECK(m_rows < (int64_t{1} << 31), op, ": ", m_rows, " source rows exceed the i32 range");
  for (int64_t m = 0; m < m_rows; ++m) {
    CMOE_CHECK(idx[m] >= 0 && idx[m] < n_out, op, ": index ", idx[m], " at ", m,
               " outside [0, ", n_out, ")");
  }
  // order: the m sorted by (idx[m], m), i.e. bucketed by destination, stable within a bucket.
  std::vector<int32_t> order(static_cast<size_t>(m_rows));
  if (n_out <= 4 * m_rows) {
    std::vector<int32_t> next(static_cast<size_t>(n_out) + 1, 0);  // bucket write positions
    for (int64_t m = 0; m < m_rows; ++m) ++next[idx[m] + 1];
    for (int64_t r = 0; r < n_out; ++r) next[r + 1] += next[r];
    for (int64_t m = 0; m < m_rows; ++m) order[next[idx[m]]++] = static_cast<int32_t>(m);
  } else {
    // Few sources into many rows (embedding rows of a large vocabulary): sorting beats
    // clearing n_out counters.
    std::vector<uint64_t> keys(static_cast<size_t>(m_rows));
    for (int64_t m = 0; m < m_rows; ++m) {
      keys[m] = (static_cast<uint64_t>(idx[m]) << 32) | static_cast<uint64_t>(m);
    }
    std::sort(keys.begin(), keys.end());
    for (int64_t j = 0; j < m_rows; ++j) order[j] = static_cast<int32_t>(keys[j] & 0xffffffffu);
  }
  std::vector<int64_t> seg;  // runs of one destination row in `order`, plus the end
  seg.reserve(static_cast<size_t>(std::min(n_out, m_rows)) + 1);
  seg.push_back(0);
  for (int64_t j = 1; j < m_rows; ++j) {
    if (idx[order[j]] != idx[order[j - 1]]) seg.push_back(j);
  }
  seg.push_back(m_rows);
  const int64_t n_seg = static_cast<int64_t>(seg.size()) - 1;
#pragma omp parallel for schedule(dynamic, 8) if (m_rows * d >= (1 << 14) && n_seg > 1)
  for (int64_t s = 0; s < n_seg; ++s) {
    float* o = out + static_cast<int64_t>(idx[order[seg[s]]]) * d;
    for (int64_t j = seg[s]; j < seg[s + 1]; ++j) {
      const int64_t m = order[j];
      add_scaled_row(o, src + m * d, w != nullptr ? w[m] : 1.0f, d);
    }
  }
}

}  // namespace cmoe::ops
