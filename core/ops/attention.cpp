// attention.cpp — causal self-attention forward/backward on CPU, FlashAttention-2 style.
//
// Tiles are held "queries in lanes": a score tile is ST (keys x 64 queries), so the online
// softmax's max and sum over keys are vertical vector ops down the rows of ST (no horizontal
// reductions), and every product is one shape, C (M x N) (+)= A (M x K) @ B (K x N), with B
// row-major along the lanes and A read by scalar broadcasts in any layout. That lets K, V, Q
// and dO be read in place from their (B, T, H, Dh) storage; only Q^T and dO^T tiles are packed.
// Per pair of a 64-query tile and a 64-key tile (Qs = scale * Q, D = rowsum(dO * O)):
//   forward:  ST = K Qs^T;  m' = max(m, colmax ST);  PT = exp(ST - m');
//             l = l e^(m - m') + colsum PT;  OT = OT e^(m - m') + V^T PT
//   backward: ST = K Qs^T;  PT = exp(ST - lse);  dV += PT dO;  dPT = V dO^T;
//             dST = scale * PT (dPT - D);  dK += dST Q;  dQT += K^T dST
// Key tiles past the diagonal are skipped (fully masked); on the diagonal tile keys > query are
// masked and the products skip the 16 x 16 blocks the mask makes dead (see Skip).
// Forward runs in parallel over (b, h, query tile), heaviest tiles first. Backward runs in
// parallel over heads (b, h): one thread owns a head's dQ, dK, dV rows, so there are no races
// and the summation order is fixed (deterministic for any thread count). Each tile primitive
// has an AVX-512 body and a portable one with the same contract, picked once at run time.
#include "core/ops/attention.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/cpu/kernels.h"
#include "core/cpu/avx512_math.h"

namespace cmoe::ops {

namespace {

constexpr int64_t kTile = 64;  // queries per query tile (= lanes of a tile row) and keys per key tile
constexpr int kVec = 16;       // f32 lanes per AVX-512 register
constexpr int kTileVecs = kTile / kVec;
constexpr int kMR = 6;         // micro-kernel rows: 6 x 4 accumulators + 4 B vectors + 1 broadcast
constexpr float kInf = std::numeric_limits<float>::infinity();

// Work a product may skip on a diagonal tile (the causal mask makes it dead):
enum class Skip : uint8_t {
  kNone,
  // C (keys x lanes): lanes below 16*floor(i/16) of rows >= i are left unwritten; the caller
  // masks them (scores) or multiplies them by P = 0 (dP), so they are never read as values.
  kLanesBelowRow,
  // C (keys x Dh) += A (keys x queries) B: A(i, k) = 0 for query k < key i, so row block i
  // starts its k loop at i.
  kKBelowRow,
};

// A-operand view for the tile products: a(i, k) = p[i * rs + k * cs].
struct StridedA {
  const float* p;
  int64_t rs, cs;
};

// ---- AVX-512 bodies ----

// C (MR x 16 NV) (+)= A (MR x K) @ B (K x 16 NV); the last vector column is masked by `tail`.
template <int MR, int NV>
CMOE_AVX512_TARGET void gemm_block_avx512(float* c, int64_t ldc, StridedA a, const float* b,
                                          int64_t ldb, int64_t K, __mmask16 tail,
                                          bool accumulate) {
  __m512 acc[MR][NV];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) {
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) {
      acc[i][j] = accumulate ? _mm512_maskz_loadu_ps(j == NV - 1 ? tail : 0xFFFF, c + i * ldc + j * kVec)
                             : _mm512_setzero_ps();
    }
  }
  for (int64_t k = 0; k < K; ++k) {
    const float* bk = b + k * ldb;
    __m512 bv[NV];
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) {
      bv[j] = j == NV - 1 ? _mm512_maskz_loadu_ps(tail, bk + j * kVec) : _mm512_loadu_ps(bk + j * kVec);
    }
    const float* ak = a.p + k * a.cs;
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      const __m512 av = _mm512_set1_ps(ak[i * a.rs]);
#pragma GCC unroll 4
      for (int j = 0; j < NV; ++j) acc[i][j] = _mm512_fmadd_ps(av, bv[j], acc[i][j]);
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) {
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) {
      _mm512_mask_storeu_ps(c + i * ldc + j * kVec, j == NV - 1 ? tail : 0xFFFF, acc[i][j]);
    }
  }
}

using GemmBlockFn = void (*)(float*, int64_t, StridedA, const float*, int64_t, int64_t, __mmask16,
                             bool);
#define CMOE_GEMM_ROW(mr)                                                                 \
  {&gemm_block_avx512<mr, 1>, &gemm_block_avx512<mr, 2>, &gemm_block_avx512<mr, 3>, \
   &gemm_block_avx512<mr, 4>}
constexpr GemmBlockFn kGemmBlocks[kMR][kTileVecs] = {CMOE_GEMM_ROW(1), CMOE_GEMM_ROW(2),
                                                     CMOE_GEMM_ROW(3), CMOE_GEMM_ROW(4),
                                                     CMOE_GEMM_ROW(5), CMOE_GEMM_ROW(6)};
#undef CMOE_GEMM_ROW

// C (M x N) (+)= A (M x K) @ B (K x N) in 64-column panels of kMR-row blocks.
void gemm_avx512(float* c, int64_t ldc, StridedA a, const float* b, int64_t ldb, int64_t M,
                 int64_t K, int64_t N, bool accumulate, Skip skip) {
  for (int64_t j0 = 0; j0 < N; j0 += kTile) {
    const int64_t j1 = std::min(N, j0 + kTile);
    for (int64_t i0 = 0; i0 < M; i0 += kMR) {
      const int mr = static_cast<int>(std::min<int64_t>(kMR, M - i0));
      const int64_t jb = skip == Skip::kLanesBelowRow ? std::max(j0, i0 / kVec * kVec) : j0;
      const int64_t k0 = skip == Skip::kKBelowRow ? std::min(i0, K) : 0;
      const int64_t n = j1 - jb;
      if (n <= 0) continue;
      const int nv = static_cast<int>((n + kVec - 1) / kVec);
      const __mmask16 tail = n % kVec == 0 ? 0xFFFF : static_cast<__mmask16>((1u << (n % kVec)) - 1);
      kGemmBlocks[mr - 1][nv - 1](c + i0 * ldc + jb, ldc, {a.p + i0 * a.rs + k0 * a.cs, a.rs, a.cs},
                                  b + k0 * ldb + jb, ldb, K - k0, tail, accumulate);
    }
  }
}

// st (cols x 64): lanes (queries) r < row (key) c become -inf. Diagonal tiles only.
CMOE_AVX512_TARGET void mask_diag_avx512(float* st, int64_t cols) {
  const __m512 neg_inf = _mm512_set1_ps(-kInf);
  for (int64_t c = 1; c < cols; ++c) {
    for (int v = 0; v < kTileVecs && c > v * kVec; ++v) {
      const int64_t n = std::min<int64_t>(kVec, c - v * kVec);
      const __mmask16 m = n == kVec ? 0xFFFF : static_cast<__mmask16>((1u << n) - 1);
      float* p = st + c * kTile + v * kVec;
      _mm512_storeu_ps(p, _mm512_mask_mov_ps(_mm512_loadu_ps(p), m, neg_inf));
    }
  }
}

// Online-softmax step over a score tile st (cols x 64): updates the running max m and sum l
// (64 lanes), turns st into exp(st - m_new) and rescales the output ot (Dh x 64) by
// alpha = exp(m_old - m_new).
CMOE_AVX512_TARGET void softmax_update_avx512(float* st, int64_t cols, float* m, float* l,
                                              float* ot, int64_t Dh) {
  for (int v = 0; v < kTileVecs; ++v) {
    float* s = st + v * kVec;
    const __m512 m_old = _mm512_loadu_ps(m + v * kVec);
    __m512 m_new = m_old;
    for (int64_t c = 0; c < cols; ++c) m_new = _mm512_max_ps(m_new, _mm512_loadu_ps(s + c * kTile));
    __m512 sum = _mm512_setzero_ps();
    for (int64_t c = 0; c < cols; ++c) {
      const __m512 p = cpu::exp512(_mm512_sub_ps(_mm512_loadu_ps(s + c * kTile), m_new));
      _mm512_storeu_ps(s + c * kTile, p);
      sum = _mm512_add_ps(sum, p);
    }
    const __m512 a = cpu::exp512(_mm512_sub_ps(m_old, m_new));
    for (int64_t d = 0; d < Dh; ++d) {
      float* o = ot + d * kTile + v * kVec;
      _mm512_storeu_ps(o, _mm512_mul_ps(_mm512_loadu_ps(o), a));
    }
    _mm512_storeu_ps(l + v * kVec, _mm512_fmadd_ps(_mm512_loadu_ps(l + v * kVec), a, sum));
    _mm512_storeu_ps(m + v * kVec, m_new);
  }
}

// st (cols x 64) <- exp(st - lse) with lse per lane.
CMOE_AVX512_TARGET void probs_avx512(float* st, int64_t cols, const float* lse) {
  for (int v = 0; v < kTileVecs; ++v) {
    const __m512 L = _mm512_loadu_ps(lse + v * kVec);
    for (int64_t c = 0; c < cols; ++c) {
      float* p = st + c * kTile + v * kVec;
      _mm512_storeu_ps(p, cpu::exp512(_mm512_sub_ps(_mm512_loadu_ps(p), L)));
    }
  }
}

// dp (cols x 64) <- scale * p * (dp - D) with D per lane.
CMOE_AVX512_TARGET void dscores_avx512(float* dp, const float* p, int64_t cols, const float* D,
                                       float scale) {
  const __m512 s = _mm512_set1_ps(scale);
  for (int v = 0; v < kTileVecs; ++v) {
    const __m512 d = _mm512_loadu_ps(D + v * kVec);
    for (int64_t c = 0; c < cols; ++c) {
      const int64_t o = c * kTile + v * kVec;
      const __m512 x = _mm512_mul_ps(_mm512_loadu_ps(p + o), _mm512_sub_ps(_mm512_loadu_ps(dp + o), d));
      _mm512_storeu_ps(dp + o, _mm512_mul_ps(x, s));
    }
  }
}

// In-register transpose of a 16 x 16 f32 block: r[i] lane j <- r[j] lane i.
CMOE_AVX512_TARGET inline void transpose16x16(__m512 r[16]) {
  __m512 t[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {
    const __m512d a = _mm512_castps_pd(t[i]), b = _mm512_castps_pd(t[i + 1]);
    const __m512d c = _mm512_castps_pd(t[i + 2]), d = _mm512_castps_pd(t[i + 3]);
    r[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
    r[i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
    r[i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
    r[i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
  }
  for (int h = 0; h < 16; h += 8) {
    for (int i = 0; i < 4; ++i) {
      t[h + i] = _mm512_shuffle_f32x4(r[h + i], r[h + i + 4], 0x88);
      t[h + i + 4] = _mm512_shuffle_f32x4(r[h + i], r[h + i + 4], 0xdd);
    }
  }
  for (int i = 0; i < 8; ++i) {
    r[i] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88);
    r[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xdd);
  }
}

__mmask16 first_lanes(int64_t n) {
  return n >= kVec ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << n) - 1);
}

// dst (Dh x 64) = s * src^T for `rows` rows of one head (row stride ld); lanes past `rows` are
// zero so padded queries contribute nothing. Works in 16 x 16 register transposes.
CMOE_AVX512_TARGET void pack_transposed_avx512(float* dst, const float* src, int64_t ld,
                                               int64_t rows, int64_t Dh, float s) {
  const __m512 sv = _mm512_set1_ps(s);
  for (int v = 0; v < kTileVecs; ++v) {
    const int64_t n = std::clamp<int64_t>(rows - v * kVec, 0, kVec);
    for (int64_t d0 = 0; d0 < Dh; d0 += kVec) {
      const int64_t nd = std::min<int64_t>(kVec, Dh - d0);
      const __mmask16 dm = first_lanes(nd);
      __m512 r[16];
      for (int i = 0; i < 16; ++i) {
        r[i] = i < n ? _mm512_mul_ps(sv, _mm512_maskz_loadu_ps(dm, src + (v * kVec + i) * ld + d0))
                     : _mm512_setzero_ps();
      }
      transpose16x16(r);
      for (int64_t j = 0; j < nd; ++j) _mm512_storeu_ps(dst + (d0 + j) * kTile + v * kVec, r[j]);
    }
  }
}

// dst rows r < rows (row stride ld, Dh floats) = src^T (src: Dh x 64) times row_scale[r]
// (1 when row_scale is null).
CMOE_AVX512_TARGET void unpack_transposed_avx512(float* dst, int64_t ld, const float* src,
                                                 int64_t rows, int64_t Dh, const float* row_scale) {
  for (int v = 0; v < kTileVecs && v * kVec < rows; ++v) {
    const int64_t n = std::min<int64_t>(kVec, rows - v * kVec);
    for (int64_t d0 = 0; d0 < Dh; d0 += kVec) {
      const int64_t nd = std::min<int64_t>(kVec, Dh - d0);
      const __mmask16 dm = first_lanes(nd);
      __m512 r[16];
      for (int j = 0; j < 16; ++j) {
        r[j] = j < nd ? _mm512_loadu_ps(src + (d0 + j) * kTile + v * kVec) : _mm512_setzero_ps();
      }
      transpose16x16(r);
      for (int64_t i = 0; i < n; ++i) {
        const int64_t row = v * kVec + i;
        const __m512 x = row_scale ? _mm512_mul_ps(r[i], _mm512_set1_ps(row_scale[row])) : r[i];
        _mm512_mask_storeu_ps(dst + row * ld + d0, dm, x);
      }
    }
  }
}

// dsum[r] = a[r, :] . b[r, :] for r < rows (row stride ld, Dh floats); 0 for padded lanes.
CMOE_AVX512_TARGET void row_dots_avx512(float* dsum, const float* a, const float* b, int64_t ld,
                                        int64_t rows, int64_t Dh) {
  for (int64_t r = 0; r < kTile; ++r) {
    __m512 acc = _mm512_setzero_ps();
    for (int64_t d0 = 0; r < rows && d0 < Dh; d0 += kVec) {
      const __mmask16 m = first_lanes(Dh - d0);
      acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + r * ld + d0),
                            _mm512_maskz_loadu_ps(m, b + r * ld + d0), acc);
    }
    dsum[r] = _mm512_reduce_add_ps(acc);
  }
}

// ---- Portable bodies (same contracts) ----

// Computes every element (skip only names work that is known to be dead).
void gemm_ref(float* c, int64_t ldc, StridedA a, const float* b, int64_t ldb, int64_t M, int64_t K,
              int64_t N, bool accumulate, Skip /*skip*/) {
  for (int64_t i = 0; i < M; ++i) {
    float* ci = c + i * ldc;
    if (!accumulate) std::fill(ci, ci + N, 0.0f);
    for (int64_t k = 0; k < K; ++k) {
      const float aik = a.p[i * a.rs + k * a.cs];
      const float* bk = b + k * ldb;
      for (int64_t j = 0; j < N; ++j) ci[j] += aik * bk[j];
    }
  }
}

void mask_diag_ref(float* st, int64_t cols) {
  for (int64_t c = 1; c < cols; ++c) std::fill(st + c * kTile, st + c * kTile + c, -kInf);
}

void softmax_update_ref(float* st, int64_t cols, float* m, float* l, float* ot, int64_t Dh) {
  for (int64_t r = 0; r < kTile; ++r) {
    float m_new = m[r];
    for (int64_t c = 0; c < cols; ++c) m_new = std::max(m_new, st[c * kTile + r]);
    float sum = 0.0f;
    for (int64_t c = 0; c < cols; ++c) {
      float& s = st[c * kTile + r];
      s = std::exp(s - m_new);
      sum += s;
    }
    const float alpha = std::exp(m[r] - m_new);
    for (int64_t d = 0; d < Dh; ++d) ot[d * kTile + r] *= alpha;
    l[r] = l[r] * alpha + sum;
    m[r] = m_new;
  }
}

void probs_ref(float* st, int64_t cols, const float* lse) {
  for (int64_t c = 0; c < cols; ++c) {
    for (int64_t r = 0; r < kTile; ++r) st[c * kTile + r] = std::exp(st[c * kTile + r] - lse[r]);
  }
}

void dscores_ref(float* dp, const float* p, int64_t cols, const float* D, float scale) {
  for (int64_t c = 0; c < cols; ++c) {
    for (int64_t r = 0; r < kTile; ++r) {
      const int64_t o = c * kTile + r;
      dp[o] = scale * p[o] * (dp[o] - D[r]);
    }
  }
}

void pack_transposed_ref(float* dst, const float* src, int64_t ld, int64_t rows, int64_t Dh,
                         float s) {
  std::fill(dst, dst + Dh * kTile, 0.0f);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t d = 0; d < Dh; ++d) dst[d * kTile + r] = s * src[r * ld + d];
  }
}

void unpack_transposed_ref(float* dst, int64_t ld, const float* src, int64_t rows, int64_t Dh,
                           const float* row_scale) {
  for (int64_t r = 0; r < rows; ++r) {
    const float sr = row_scale ? row_scale[r] : 1.0f;
    for (int64_t d = 0; d < Dh; ++d) dst[r * ld + d] = src[d * kTile + r] * sr;
  }
}

void row_dots_ref(float* dsum, const float* a, const float* b, int64_t ld, int64_t rows,
                  int64_t Dh) {
  for (int64_t r = 0; r < kTile; ++r) {
    float acc = 0.0f;
    for (int64_t d = 0; r < rows && d < Dh; ++d) acc += a[r * ld + d] * b[r * ld + d];
    dsum[r] = acc;
  }
}

// ---- Dispatch ----

struct TileKernels {
  void (*gemm)(float*, int64_t, StridedA, const float*, int64_t, int64_t, int64_t, int64_t, bool,
               Skip);
  void (*mask_diag)(float*, int64_t);
  void (*softmax_update)(float*, int64_t, float*, float*, float*, int64_t);
  void (*probs)(float*, int64_t, const float*);
  void (*dscores)(float*, const float*, int64_t, const float*, float);
  void (*pack_transposed)(float*, const float*, int64_t, int64_t, int64_t, float);
  void (*unpack_transposed)(float*, int64_t, const float*, int64_t, int64_t, const float*);
  void (*row_dots)(float*, const float*, const float*, int64_t, int64_t, int64_t);
};

const TileKernels& tile_kernels() {
  static const TileKernels avx512{&gemm_avx512, &mask_diag_avx512, &softmax_update_avx512,
                                  &probs_avx512, &dscores_avx512, &pack_transposed_avx512,
                                  &unpack_transposed_avx512, &row_dots_avx512};
  static const TileKernels portable{&gemm_ref, &mask_diag_ref, &softmax_update_ref, &probs_ref,
                                    &dscores_ref, &pack_transposed_ref, &unpack_transposed_ref,
                                    &row_dots_ref};
  return cpu::has_avx512() ? avx512 : portable;
}

// C (M x 64 lanes) += A (M x cols keys) @ B (cols keys x 64 lanes) where B is P or dS of a
// tile: on the diagonal B(c, r) = 0 for key c > query r, so key block kb only reaches lanes
// >= 16 kb (10 of 16 lane-key blocks computed).
void gemm_keys(const TileKernels& kern, float* c, StridedA a, const float* b, int64_t M,
               int64_t cols, bool diagonal) {
  if (!diagonal) {
    kern.gemm(c, kTile, a, b, kTile, M, cols, kTile, true, Skip::kNone);
    return;
  }
  for (int64_t k0 = 0; k0 < cols; k0 += kVec) {
    kern.gemm(c + k0, kTile, {a.p + k0 * a.cs, a.rs, a.cs}, b + k0 * kTile + k0, kTile, M,
              std::min<int64_t>(kVec, cols - k0), kTile - k0, true, Skip::kNone);
  }
}

void check_qkv(const Tensor& t, const Tensor& q, const char* name) {
  CMOE_CHECK(t.device().is_cpu() && t.dtype() == DType::kF32 && t.shape() == q.shape(), "attention: ",
             name, " is ", t.str(), ", expected f32", q.shape().str(), " cpu");
}

void check_args(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& lse) {
  CMOE_CHECK(q.rank() == 4 && q.dtype() == DType::kF32 && q.device().is_cpu(),
             "attention: q must be f32 (B, T, H, Dh) on cpu, got ", q.str());
  check_qkv(k, q, "k");
  check_qkv(v, q, "v");
  CMOE_CHECK(lse.dtype() == DType::kF32 && lse.shape() == Shape({q.dim(0), q.dim(2), q.dim(1)}),
             "attention: lse is ", lse.str(), ", expected f32 (B, H, T)");
}

}  // namespace

// out[b,t,h,:] = sum_{s<=t} softmax_s(scale q[b,t,h,:] . k[b,s,h,:]) v[b,s,h,:];
// lse[b,h,t] = log sum_{s<=t} exp(scale q[b,t,h,:] . k[b,s,h,:])
void attention_forward(Tensor& out, Tensor& lse, const Tensor& q, const Tensor& k, const Tensor& v,
                       float scale, DType /*compute_dtype: f32 here, see attention.h*/) {
  check_args(q, k, v, lse);
  check_qkv(out, q, "out");
  const int64_t B = q.dim(0), T = q.dim(1), H = q.dim(2), Dh = q.dim(3);
  const int64_t ld = H * Dh;  // floats between consecutive positions of one head
  const int64_t n_qt = (T + kTile - 1) / kTile, n_items = B * H * n_qt;
  const TileKernels& kern = tile_kernels();
  const float *qp = q.data<float>(), *kp = k.data<float>(), *vp = v.data<float>();
  float *op = out.data<float>(), *lp = lse.data<float>();

  // Per-thread tiles: QsT (Dh, 64), OT (Dh, 64), ST (64, 64), m, l (64 each).
  const int64_t per_thread = 2 * Dh * kTile + kTile * kTile + 2 * kTile;
  const int n_threads = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(omp_get_max_threads(), n_items)));
  Tensor scratch = Tensor::empty({n_threads, per_thread}, DType::kF32);
  float* ws_all = scratch.data<float>();

#pragma omp parallel num_threads(n_threads)
  {
    float* qst = ws_all + omp_get_thread_num() * per_thread;  // (Dh, 64) scale * Q^T
    float* ot = qst + Dh * kTile;                              // (Dh, 64) unnormalised O^T
    float* st = ot + Dh * kTile;                               // (64 keys, 64 queries)
    float* m = st + kTile * kTile;                             // (64) running max
    float* l = m + kTile;                                      // (64) running sum

#pragma omp for schedule(dynamic, 1)
    for (int64_t w = 0; w < n_items; ++w) {
      // Heaviest (last) query tiles first so the dynamic schedule ends balanced.
      const int64_t qt = n_qt - 1 - w / (B * H), bh = w % (B * H);
      const int64_t b = bh / H, h = bh % H;
      const int64_t head = (b * T * H + h) * Dh;  // offset of (b, 0, h, 0)
      const int64_t r0 = qt * kTile, rows = std::min(kTile, T - r0);
      kern.pack_transposed(qst, qp + head + r0 * ld, ld, rows, Dh, scale);
      std::fill(ot, ot + Dh * kTile, 0.0f);
      std::fill(m, m + kTile, -kInf);
      std::fill(l, l + kTile, 0.0f);
      for (int64_t kt = 0; kt <= qt; ++kt) {
        const int64_t c0 = kt * kTile, cols = std::min(kTile, T - c0);
        const bool diag = kt == qt;
        kern.gemm(st, kTile, {kp + head + c0 * ld, ld, 1}, qst, kTile, cols, Dh, kTile, false,
                  diag ? Skip::kLanesBelowRow : Skip::kNone);
        if (diag) kern.mask_diag(st, cols);
        kern.softmax_update(st, cols, m, l, ot, Dh);
        gemm_keys(kern, ot, {vp + head + c0 * ld, 1, ld}, st, Dh, cols, diag);
      }
      float* lse_row = lp + bh * T + r0;
      for (int64_t r = 0; r < rows; ++r) {
        lse_row[r] = m[r] + std::log(l[r]);
        l[r] = 1.0f / l[r];
      }
      kern.unpack_transposed(op + head + r0 * ld, ld, ot, rows, Dh, l);
    }
  }
}

// D = rowsum(dout * out); P = exp(scale q k^T - lse) (causal); dv = P^T dout;
// dS = P * (dout v^T - D); dq = scale dS k; dk = scale dS^T q
void attention_backward(Tensor& dq, Tensor& dk, Tensor& dv, const Tensor& dout, const Tensor& q,
                        const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse,
                        float scale, DType /*compute_dtype: f32 here*/) {
  check_args(q, k, v, lse);
  check_qkv(out, q, "out");
  check_qkv(dout, q, "dout");
  check_qkv(dq, q, "dq");
  check_qkv(dk, q, "dk");
  check_qkv(dv, q, "dv");
  const int64_t B = q.dim(0), T = q.dim(1), H = q.dim(2), Dh = q.dim(3);
  const int64_t ld = H * Dh;
  const int64_t n_qt = (T + kTile - 1) / kTile, n_heads = B * H;
  const TileKernels& kern = tile_kernels();
  const float *qp = q.data<float>(), *kp = k.data<float>(), *vp = v.data<float>();
  const float *op = out.data<float>(), *dop = dout.data<float>(), *lp = lse.data<float>();
  float *dqp = dq.data<float>(), *dkp = dk.data<float>(), *dvp = dv.data<float>();

  // Per-thread tiles: QsT, dOT, dQT (Dh, 64); ST, dPT (64, 64); lse, D (64).
  const int64_t per_thread = 3 * Dh * kTile + 2 * kTile * kTile + 2 * kTile;
  const int n_threads = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(omp_get_max_threads(), n_heads)));
  // Zeroed: lanes a diagonal dP tile skips (Skip::kLanesBelowRow) keep finite old values,
  // which dscores multiplies by P = 0.
  Tensor scratch = Tensor::zeros({n_threads, per_thread}, DType::kF32);
  float* ws_all = scratch.data<float>();

#pragma omp parallel num_threads(n_threads)
  {
    float* qst = ws_all + omp_get_thread_num() * per_thread;  // (Dh, 64) scale * Q^T
    float* dot = qst + Dh * kTile;                             // (Dh, 64) dO^T
    float* dqt = dot + Dh * kTile;                             // (Dh, 64) dQ^T accumulator
    float* st = dqt + Dh * kTile;                              // (64 keys, 64 queries) S, then P
    float* dpt = st + kTile * kTile;                           // (64 keys, 64 queries) dP, then dS
    float* lse_t = dpt + kTile * kTile;                        // (64)
    float* dsum = lse_t + kTile;                               // (64) D

#pragma omp for schedule(dynamic, 1)
    for (int64_t bh = 0; bh < n_heads; ++bh) {
      const int64_t b = bh / H, h = bh % H;
      const int64_t head = (b * T * H + h) * Dh;
      for (int64_t qt = 0; qt < n_qt; ++qt) {
        const int64_t r0 = qt * kTile, rows = std::min(kTile, T - r0);
        const float* q_rows = qp + head + r0 * ld;
        const float* do_rows = dop + head + r0 * ld;
        kern.pack_transposed(qst, q_rows, ld, rows, Dh, scale);
        kern.pack_transposed(dot, do_rows, ld, rows, Dh, 1.0f);
        // Padded lanes: lse = +inf makes their P exactly 0.
        std::fill(lse_t, lse_t + kTile, kInf);
        std::copy(lp + bh * T + r0, lp + bh * T + r0 + rows, lse_t);
        kern.row_dots(dsum, do_rows, op + head + r0 * ld, ld, rows, Dh);
        std::fill(dqt, dqt + Dh * kTile, 0.0f);
        for (int64_t kt = 0; kt <= qt; ++kt) {
          const int64_t c0 = kt * kTile, cols = std::min(kTile, T - c0);
          const float* k_rows = kp + head + c0 * ld;
          const bool diag = kt == qt;
          const Skip lanes = diag ? Skip::kLanesBelowRow : Skip::kNone;
          const Skip ks = diag ? Skip::kKBelowRow : Skip::kNone;
          kern.gemm(st, kTile, {k_rows, ld, 1}, qst, kTile, cols, Dh, kTile, false, lanes);
          if (diag) kern.mask_diag(st, cols);
          kern.probs(st, cols, lse_t);
          // Key tile kt is first reached on the diagonal (qt == kt), which initialises its dK, dV.
          kern.gemm(dvp + head + c0 * ld, ld, {st, kTile, 1}, do_rows, ld, cols, rows, Dh, !diag, ks);
          kern.gemm(dpt, kTile, {vp + head + c0 * ld, ld, 1}, dot, kTile, cols, Dh, kTile, false,
                    lanes);
          kern.dscores(dpt, st, cols, dsum, scale);
          kern.gemm(dkp + head + c0 * ld, ld, {dpt, kTile, 1}, q_rows, ld, cols, rows, Dh, !diag, ks);
          gemm_keys(kern, dqt, {k_rows, 1, ld}, dpt, Dh, cols, diag);
        }
        kern.unpack_transposed(dqp + head + r0 * ld, ld, dqt, rows, Dh, nullptr);
      }
    }
  }
}

// Inference over a cache: one (b, t, h) query row per work item, its scores over keys
// 0 .. pos0 + t in a per-thread buffer (short rows: one query against at most seq_len keys), the
// softmax with the row max subtracted, then the weighted sum of values.
void attention_kv_forward(Tensor& out, const Tensor& q, const Tensor& k, const Tensor& v, float scale,
                          int64_t pos0) {
  CMOE_CHECK(q.rank() == 4 && q.dtype() == DType::kF32 && q.device().is_cpu(),
             "attention_kv: q must be f32 (B, Tq, H, Dh) on cpu, got ", q.str());
  const int64_t B = q.dim(0), Tq = q.dim(1), H = q.dim(2), Dh = q.dim(3);
  for (const Tensor* t : {&k, &v}) {
    CMOE_CHECK(t->rank() == 4 && t->dtype() == DType::kF32 && t->device().is_cpu() && t->dim(0) == B &&
                   t->dim(2) == H && t->dim(3) == Dh,
               "attention_kv: cache ", t->str(), " does not match q ", q.str());
  }
  const int64_t Tk = k.dim(1);
  CMOE_CHECK(v.dim(1) == Tk && pos0 >= 0 && pos0 + Tq <= Tk, "attention_kv: queries at positions [", pos0, ", ",
             pos0 + Tq, ") need that many cached keys, the cache holds ", Tk);
  CMOE_CHECK(out.dtype() == DType::kF32 && out.shape() == q.shape() && out.device().is_cpu(), "attention_kv: out is ",
             out.str(), ", expected f32", q.shape().str());
  const float *qp = q.data<float>(), *kp = k.data<float>(), *vp = v.data<float>();
  float* op = out.data<float>();
  const int64_t n_items = B * Tq * H, n_keys_max = pos0 + Tq;
  // A decode step of a small model is a few microseconds of work: threads would cost more.
  const bool small = n_items * n_keys_max * Dh < (int64_t{1} << 16);
  const int n_threads =
      small ? 1 : static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(omp_get_max_threads(), n_items)));
  Tensor scratch = Tensor::empty({n_threads, n_keys_max + Dh}, DType::kF32);
#pragma omp parallel num_threads(n_threads)
  {
    float* p = scratch.data<float>() + omp_get_thread_num() * (n_keys_max + Dh);  // scores, then weights
    float* acc = p + n_keys_max;                                                 // (Dh) weighted sum
#pragma omp for schedule(static)
    for (int64_t w = 0; w < n_items; ++w) {
      const int64_t b = w / (Tq * H), t = (w / H) % Tq, h = w % H;
      const float* qr = qp + ((b * Tq + t) * H + h) * Dh;
      const int64_t n_keys = pos0 + t + 1;
      float m = -kInf;
      for (int64_t s = 0; s < n_keys; ++s) {
        const float* kr = kp + ((b * Tk + s) * H + h) * Dh;
        float dot = 0;
        for (int64_t d = 0; d < Dh; ++d) dot += qr[d] * kr[d];
        p[s] = scale * dot;
        m = std::max(m, p[s]);
      }
      double l = 0;
      for (int64_t s = 0; s < n_keys; ++s) {
        p[s] = std::exp(p[s] - m);
        l += p[s];
      }
      std::fill(acc, acc + Dh, 0.0f);
      for (int64_t s = 0; s < n_keys; ++s) {
        const float* vr = vp + ((b * Tk + s) * H + h) * Dh;
        for (int64_t d = 0; d < Dh; ++d) acc[d] += p[s] * vr[d];
      }
      const float inv = static_cast<float>(1.0 / l);
      float* orow = op + ((b * Tq + t) * H + h) * Dh;
      for (int64_t d = 0; d < Dh; ++d) orow[d] = acc[d] * inv;
    }
  }
}

}  // namespace cmoe::ops
