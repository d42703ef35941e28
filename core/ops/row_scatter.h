// row_scatter.h — the deterministic indexed row accumulation behind embedding_backward,
// gather_rows_backward and scatter_add_rows_forward (an internal helper of core/ops, not an op).
//
// Racing threads on out[idx[m]] would need atomics and would make the sum order depend on
// scheduling. Instead the m are bucketed by destination row (a stable counting sort, or a
// sort of packed (row, m) keys when the destination has far more rows than there are
// sources), and each thread owns whole destination rows, adding its sources in m order. The
// result is bitwise the same for any thread count and equals the plain serial loop.
#pragma once

#include <cstdint>

namespace cmoe::ops {

// out[idx[m], :] += w[m] * src[m, :] for m = 0 .. m_rows-1 in order (w == nullptr means 1).
// out: (n_out, d); src: (m_rows, d); idx: (m_rows) in [0, n_out); w: (m_rows) or nullptr.
void row_scatter_add(float* out, int64_t n_out, const float* src, const int32_t* idx,
                     const float* w, int64_t m_rows, int64_t d, const char* op);

}  // namespace cmoe::ops
