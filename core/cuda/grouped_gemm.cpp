// grouped_gemm.cpp — problem lists of the grouped expert GEMMs (see grouped_gemm.h).
#include "core/cuda/grouped_gemm.h"

#include "core/check.h"

namespace cmoe::cuda {

namespace {
const void* at(const void* base, int64_t elems, int64_t bytes) {
  return static_cast<const char*>(base) + elems * bytes;
}
void* at(void* base, int64_t elems, int64_t bytes) { return static_cast<char*>(base) + elems * bytes; }
}  // namespace

GroupedGemmPlan grouped_gemm_plan(GroupedGemmKind kind, std::span<const int64_t> offsets, int64_t M, int64_t K,
                                  const void* a, const void* b, void* out, int64_t in_bytes) {
  CMOE_CHECK(!offsets.empty() && offsets[0] == 0 && M >= 0 && K >= 0 && (in_bytes == 2 || in_bytes == 4),
             "grouped_gemm_plan: ", offsets.size(), " offsets, M ", M, ", K ", K, ", ", in_bytes, "-byte inputs");
  const int64_t G = static_cast<int64_t>(offsets.size()) - 1;
  GroupedGemmPlan p;
  p.trans_a = kind == GroupedGemmKind::kGradWeight;
  p.trans_b = kind == GroupedGemmKind::kForward;
  p.beta = kind == GroupedGemmKind::kGradWeight ? 1.0f : 0.0f;
  const int64_t inner = kind == GroupedGemmKind::kForward ? K : kind == GroupedGemmKind::kGradInput ? M : 1;
  p.zero_output = inner == 0 && offsets[G] > 0 && (kind == GroupedGemmKind::kForward ? M : K) > 0;
  for (int64_t g = 0; g < G; ++g) {
    const int64_t r0 = offsets[g], rows = offsets[g + 1] - r0;
    CMOE_CHECK(rows >= 0, "grouped_gemm_plan: offsets decrease at group ", g, " (", r0, " -> ", offsets[g + 1], ")");
    if (rows == 0) continue;
    int64_t m = 0, n = 0, k = 0;
    const void *pa = nullptr, *pb = nullptr;
    void* pc = nullptr;
    switch (kind) {
      case GroupedGemmKind::kForward:  // y_g = x_g @ w_g^T
        m = rows, n = M, k = K;
        pa = at(a, r0 * K, in_bytes), pb = at(b, g * M * K, in_bytes), pc = at(out, r0 * M, 4);
        break;
      case GroupedGemmKind::kGradInput:  // dx_g = dout_g @ w_g
        m = rows, n = K, k = M;
        pa = at(a, r0 * M, in_bytes), pb = at(b, g * M * K, in_bytes), pc = at(out, r0 * K, 4);
        break;
      case GroupedGemmKind::kGradWeight:  // dw_g += dout_g^T @ x_g
        m = M, n = K, k = rows;
        pa = at(a, r0 * M, in_bytes), pb = at(b, r0 * K, in_bytes), pc = at(out, g * M * K, 4);
        break;
    }
    if (m == 0 || n == 0 || k == 0) continue;
    p.group.push_back(g);
    p.m.push_back(m);
    p.n.push_back(n);
    p.k.push_back(k);
    p.a.push_back(pa);
    p.b.push_back(pb);
    p.c.push_back(pc);
  }
  return p;
}

}  // namespace cmoe::cuda
