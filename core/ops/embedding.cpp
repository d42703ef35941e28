// embedding.cpp — CPU token embedding lookup (see embedding.h).
//
// Forward copies rows, OpenMP over tokens. Backward is the same indexed accumulation as
// gather_rows_backward and shares its deterministic bucketing (row_scatter.h): a token that
// repeats adds its gradients into the table row in token order, whatever the thread count.
#include "core/ops/embedding.h"

#include <cstring>

#include "core/ops/row_scatter.h"

namespace cmoe::ops {

namespace {
void check_ids(const Tensor& ids, const char* op) {
  CMOE_CHECK(ids.dtype() == DType::kI32 && ids.device().is_cpu(), op, ": ids ", ids.str(),
             ", want i32 on CPU");
}
void check_mat(const Tensor& t, int64_t rows, int64_t cols, const char* op, const char* what) {
  CMOE_CHECK(t.dtype() == DType::kF32 && t.device().is_cpu() && t.rows() == rows && t.cols() == cols,
             op, ": ", what, " is ", t.str(), ", want f32 (", rows, ", ", cols, ") on CPU");
}
}  // namespace

// out[n, :] = table[ids[n], :]
void embedding_forward(Tensor& out, const Tensor& table, const Tensor& ids) {
  check_ids(ids, "embedding_forward");
  const int64_t v = table.rows(), d = table.cols(), n = ids.numel();
  check_mat(table, v, d, "embedding_forward", "table");
  check_mat(out, n, d, "embedding_forward", "out");
  float* po = out.data<float>();            // (N, D)
  const float* pt = table.data<float>();    // (V, D)
  const int32_t* pi = ids.data<int32_t>();  // (N)
#pragma omp parallel for schedule(static) if (n * d >= (1 << 14))
  for (int64_t t = 0; t < n; ++t) {
    CMOE_CHECK(pi[t] >= 0 && pi[t] < v, "embedding_forward: id ", pi[t], " at ", t,
               " outside the vocabulary [0, ", v, ")");
    std::memcpy(po + t * d, pt + static_cast<int64_t>(pi[t]) * d, static_cast<size_t>(d) * sizeof(float));
  }
}

// dtable[ids[n], :] += dout[n, :], in n order per row
void embedding_backward(Tensor& dtable, const Tensor& dout, const Tensor& ids) {
  check_ids(ids, "embedding_backward");
  const int64_t v = dtable.rows(), d = dtable.cols(), n = ids.numel();
  check_mat(dtable, v, d, "embedding_backward", "dtable");
  check_mat(dout, n, d, "embedding_backward", "dout");
  row_scatter_add(dtable.data<float>(), v, dout.data<float>(), ids.data<int32_t>(), nullptr, n, d,
                  "embedding_backward");
}

}  // namespace cmoe::ops
