// attention.cu — fused causal attention, forward and backward, FlashAttention-2 style in f32
// (the op's contract: core/ops/attention.h; its CPU twin core/ops/attention.cpp).
//
//   S = scale Q K^T (causal);  forward: online softmax over key tiles, O = softmax(S) V,
//   lse = rowwise log-sum-exp;  backward: P = exp(S - lse), D = rowsum(dO * O),
//   dV = P^T dO, dS = P * (dO V^T - D), dQ = scale dS K, dK = scale dS^T Q.
// The (T x T) scores never exist: a block holds one 64 x 64 tile of them in shared memory.
//
// Blocks of 256 threads own a 64-row tile (queries for the forward and dQ, keys for dK/dV) of
// one (batch, head), all tiles of the head dim in shared memory (rows padded by one float, so
// column walks hit distinct banks). Thread (ty, tx) = (tid / 16, tid % 16) holds score rows
// 4 ty .. 4 ty + 3 and columns tx + 16 j; the 16 threads of a row are one half-warp, whose
// shuffles give the row max and sum. Backward is two kernels (dK/dV over query tiles, dQ over key
// tiles) that each recompute P, so no accumulation races: results are the same on every run.
// Head dims up to 128, in buckets of 64 and 128 (zero padding up to the bucket).
//
// With bf16 compute the adapter takes another path instead (core/cuda/ops_attention.cpp): the four
// products on cuBLAS tensor cores over a chunk of heads at a time, with the scores materialised
// per chunk, and the row kernels at the end of this file for the causal softmax and dS.
#include "core/cuda/plugin/device_util.cuh"
#include "core/cuda/plugin/entries.h"

namespace cmoe::cuda_plugin {

namespace {

constexpr int kTile = geom::kAttnTile;     // 64 rows / columns per tile
constexpr int kThreads = geom::kAttnThreads;
constexpr int kLP = kTile + 1;             // padded row of a score tile

struct Head {
  int64_t T, H, Dh;
  int64_t stride;  // elements between positions t and t + 1 of one head: H * Dh
};

// Element (t, d) of head (b, h) in a (B, T, H, Dh) tensor starts at base + t * stride + d.
__device__ __forceinline__ int64_t head_base(const Head& hd, int64_t bh) {
  const int64_t b = bh / hd.H, h = bh % hd.H;
  return (b * hd.T * hd.H + h) * hd.Dh;
}

// Loads rows [t0, t0 + 64) of one head into a (64, DH + 1) shared tile, zero past T or Dh.
template <int DH>
__device__ __forceinline__ void load_tile(float* tile, const float* src, const Head& hd, int64_t t0) {
  constexpr int kLD = DH + 1;
  for (int i = threadIdx.x; i < kTile * DH; i += kThreads) {
    const int r = i / DH, d = i % DH;
    const int64_t t = t0 + r;
    tile[r * kLD + d] = t < hd.T && d < hd.Dh ? src[t * hd.stride + d] : 0.0f;
  }
}

// sc[i][j] = sum_d A[4 ty + i][d] * B[tx + 16 j][d] over the shared tiles A, B (64, DH + 1).
template <int DH>
__device__ __forceinline__ void tile_dots(float (&sc)[4][4], const float* A, const float* B, int ty, int tx) {
  constexpr int kLD = DH + 1;
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) sc[i][j] = 0.0f;
#pragma unroll 8
  for (int d = 0; d < DH; ++d) {
    float a[4], b[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) a[i] = A[(4 * ty + i) * kLD + d];
#pragma unroll
    for (int j = 0; j < 4; ++j) b[j] = B[(tx + 16 * j) * kLD + d];
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < 4; ++j) sc[i][j] += a[i] * b[j];
  }
}

// Across the 16 threads (one half-warp) holding a score row.
__device__ __forceinline__ float row_max16(float v) {
  for (int o = 8; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
__device__ __forceinline__ float row_sum16(float v) {
  for (int o = 8; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

template <int DH>
__global__ void __launch_bounds__(kThreads)
    attention_forward_kernel(float* __restrict__ out, float* __restrict__ lse, const float* __restrict__ q,
                             const float* __restrict__ k, const float* __restrict__ v, Head hd, float scale) {
  constexpr int kLD = DH + 1, kCols = DH / 16;
  extern __shared__ float smem[];
  float* Qs = smem;              // (64, DH + 1) queries
  float* Ks = Qs + kTile * kLD;  // (64, DH + 1) keys
  float* Vs = Ks + kTile * kLD;  // (64, DH + 1) values
  float* Ps = Vs + kTile * kLD;  // (64, 65) probabilities of the current key tile
  const int ty = threadIdx.x / 16, tx = threadIdx.x % 16;
  const int64_t qt = blockIdx.x, bh = blockIdx.y, q0 = qt * kTile;
  const int64_t base = head_base(hd, bh);
  load_tile<DH>(Qs, q + base, hd, q0);

  float m[4], l[4], acc[4][kCols];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    m[i] = -INFINITY;
    l[i] = 0.0f;
#pragma unroll
    for (int c = 0; c < kCols; ++c) acc[i][c] = 0.0f;
  }
  // Causal: key tiles 0 .. qt. Key 0 is visible to every query, so after tile 0 each row's max
  // is finite and exp(m_old - m_new) is never exp(-inf + inf).
  for (int64_t kt = 0; kt <= qt; ++kt) {
    __syncthreads();  // the previous tile's Ks, Vs and Ps are no longer read
    load_tile<DH>(Ks, k + base, hd, kt * kTile);
    load_tile<DH>(Vs, v + base, hd, kt * kTile);
    __syncthreads();
    float sc[4][4];
    tile_dots<DH>(sc, Qs, Ks, ty, tx);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int64_t tq = q0 + 4 * ty + i;
      float rmax = -INFINITY;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int64_t tk = kt * kTile + tx + 16 * j;
        sc[i][j] = tk > tq || tk >= hd.T ? -INFINITY : sc[i][j] * scale;
        rmax = fmaxf(rmax, sc[i][j]);
      }
      const float m_new = fmaxf(m[i], row_max16(rmax));
      const float corr = expf(m[i] - m_new);
      float rsum = 0.0f;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const float p = sc[i][j] == -INFINITY ? 0.0f : expf(sc[i][j] - m_new);
        Ps[(4 * ty + i) * kLP + tx + 16 * j] = p;
        rsum += p;
      }
      l[i] = l[i] * corr + row_sum16(rsum);
      m[i] = m_new;
#pragma unroll
      for (int c = 0; c < kCols; ++c) acc[i][c] *= corr;
    }
    __syncthreads();
#pragma unroll 4
    for (int c = 0; c < kTile; ++c) {
      float p[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) p[i] = Ps[(4 * ty + i) * kLP + c];
#pragma unroll
      for (int cc = 0; cc < kCols; ++cc) {
        const float vv = Vs[c * kLD + tx + 16 * cc];
#pragma unroll
        for (int i = 0; i < 4; ++i) acc[i][cc] += p[i] * vv;
      }
    }
  }
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int64_t tq = q0 + 4 * ty + i;
    if (tq >= hd.T) continue;
    const float inv = 1.0f / l[i];
#pragma unroll
    for (int cc = 0; cc < kCols; ++cc) {
      const int d = tx + 16 * cc;
      if (d < hd.Dh) out[base + tq * hd.stride + d] = acc[i][cc] * inv;
    }
    if (tx == 0) lse[bh * hd.T + tq] = m[i] + logf(l[i]);
  }
}

// delta[b, h, t] = sum_d dout[b, t, h, d] * out[b, t, h, d]
__global__ void attention_delta_kernel(float* __restrict__ delta, const float* __restrict__ dout,
                                       const float* __restrict__ out, Head hd, int64_t batch) {
  CMOE_GRID_STRIDE(i, batch * hd.T * hd.H) {  // i = (b * T + t) * H + h, rows of the tensors
    const float* g = dout + i * hd.Dh;
    const float* o = out + i * hd.Dh;
    float acc = 0.0f;
    for (int64_t d = 0; d < hd.Dh; ++d) acc += g[d] * o[d];
    const int64_t h = i % hd.H, bt = i / hd.H, t = bt % hd.T, b = bt / hd.T;
    delta[(b * hd.H + h) * hd.T + t] = acc;
  }
}

// P (or dS) tile entries of a (query tile q0, key tile k0) pair: sc holds Q K^T on entry.
__device__ __forceinline__ void probs(float (&p)[4][4], const float (&sc)[4][4], const float* Ls, int64_t q0,
                                      int64_t k0, int ty, int tx, int64_t T, float scale) {
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int64_t tq = q0 + 4 * ty + i;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int64_t tk = k0 + tx + 16 * j;
      p[i][j] = tk > tq || tq >= T || tk >= T ? 0.0f : expf(sc[i][j] * scale - Ls[4 * ty + i]);
    }
  }
}

// Loads lse and delta of query rows [q0, q0 + 64) (zero past T: those rows have P = 0).
__device__ __forceinline__ void load_rows(float* Ls, float* Ds, const float* lse, const float* delta, int64_t bh,
                                          int64_t q0, int64_t T) {
  for (int r = threadIdx.x; r < kTile; r += kThreads) {
    const int64_t t = q0 + r;
    Ls[r] = t < T ? lse[bh * T + t] : 0.0f;
    Ds[r] = t < T ? delta[bh * T + t] : 0.0f;
  }
}

template <int DH>
__global__ void __launch_bounds__(kThreads)
    attention_dkdv_kernel(float* __restrict__ dk, float* __restrict__ dv, const float* __restrict__ dout,
                          const float* __restrict__ q, const float* __restrict__ k, const float* __restrict__ v,
                          const float* __restrict__ lse, const float* __restrict__ delta, Head hd, float scale) {
  constexpr int kLD = DH + 1, kCols = DH / 16;
  extern __shared__ float smem[];
  float* Ks = smem;                 // (64, DH + 1) this block's keys
  float* Vs = Ks + kTile * kLD;     // (64, DH + 1) their values
  float* Qs = Vs + kTile * kLD;     // (64, DH + 1) the current query tile
  float* dOs = Qs + kTile * kLD;    // (64, DH + 1) its output gradients
  float* Ps = dOs + kTile * kLD;    // (64, 65) P, then dS, of the tile pair
  float* Ls = Ps + kTile * kLP;     // (64) lse of the query tile
  float* Ds = Ls + kTile;           // (64) delta of the query tile
  const int ty = threadIdx.x / 16, tx = threadIdx.x % 16;
  const int64_t kt = blockIdx.x, bh = blockIdx.y, k0 = kt * kTile;
  const int64_t base = head_base(hd, bh);
  load_tile<DH>(Ks, k + base, hd, k0);
  load_tile<DH>(Vs, v + base, hd, k0);
  float adk[4][kCols], adv[4][kCols];  // rows 4 ty + i of this key tile, columns tx + 16 c
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int c = 0; c < kCols; ++c) adk[i][c] = adv[i][c] = 0.0f;
  const int64_t n_q = geom::attn_tiles(hd.T);
  for (int64_t qt = kt; qt < n_q; ++qt) {  // query tiles at or after the key tile
    const int64_t q0 = qt * kTile;
    __syncthreads();
    load_tile<DH>(Qs, q + base, hd, q0);
    load_tile<DH>(dOs, dout + base, hd, q0);
    load_rows(Ls, Ds, lse, delta, bh, q0, hd.T);
    __syncthreads();
    float sc[4][4], p[4][4], dp[4][4];
    tile_dots<DH>(sc, Qs, Ks, ty, tx);
    probs(p, sc, Ls, q0, k0, ty, tx, hd.T, scale);
    tile_dots<DH>(dp, dOs, Vs, ty, tx);  // dP = dO V^T
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < 4; ++j) Ps[(4 * ty + i) * kLP + tx + 16 * j] = p[i][j];
    __syncthreads();
    // dV[key] += sum_q P[q][key] dO[q]
#pragma unroll 4
    for (int r = 0; r < kTile; ++r) {
      float pk[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) pk[i] = Ps[r * kLP + 4 * ty + i];
#pragma unroll
      for (int c = 0; c < kCols; ++c) {
        const float g = dOs[r * kLD + tx + 16 * c];
#pragma unroll
        for (int i = 0; i < 4; ++i) adv[i][c] += pk[i] * g;
      }
    }
    __syncthreads();
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < 4; ++j) Ps[(4 * ty + i) * kLP + tx + 16 * j] = p[i][j] * (dp[i][j] - Ds[4 * ty + i]);
    __syncthreads();
    // dK[key] += sum_q dS[q][key] Q[q]  (times scale at the end)
#pragma unroll 4
    for (int r = 0; r < kTile; ++r) {
      float sk[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) sk[i] = Ps[r * kLP + 4 * ty + i];
#pragma unroll
      for (int c = 0; c < kCols; ++c) {
        const float qq = Qs[r * kLD + tx + 16 * c];
#pragma unroll
        for (int i = 0; i < 4; ++i) adk[i][c] += sk[i] * qq;
      }
    }
  }
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int64_t tk = k0 + 4 * ty + i;
    if (tk >= hd.T) continue;
#pragma unroll
    for (int c = 0; c < kCols; ++c) {
      const int d = tx + 16 * c;
      if (d >= hd.Dh) continue;
      dk[base + tk * hd.stride + d] = adk[i][c] * scale;
      dv[base + tk * hd.stride + d] = adv[i][c];
    }
  }
}

template <int DH>
__global__ void __launch_bounds__(kThreads)
    attention_dq_kernel(float* __restrict__ dq, const float* __restrict__ dout, const float* __restrict__ q,
                        const float* __restrict__ k, const float* __restrict__ v, const float* __restrict__ lse,
                        const float* __restrict__ delta, Head hd, float scale) {
  constexpr int kLD = DH + 1, kCols = DH / 16;
  extern __shared__ float smem[];
  float* Qs = smem;                 // (64, DH + 1) this block's queries
  float* dOs = Qs + kTile * kLD;    // (64, DH + 1) their output gradients
  float* Ks = dOs + kTile * kLD;    // (64, DH + 1) the current key tile
  float* Vs = Ks + kTile * kLD;     // (64, DH + 1) its values
  float* Ps = Vs + kTile * kLD;     // (64, 65) dS of the tile pair
  float* Ls = Ps + kTile * kLP;     // (64) lse of the query tile
  float* Ds = Ls + kTile;           // (64) delta of the query tile
  const int ty = threadIdx.x / 16, tx = threadIdx.x % 16;
  const int64_t qt = blockIdx.x, bh = blockIdx.y, q0 = qt * kTile;
  const int64_t base = head_base(hd, bh);
  load_tile<DH>(Qs, q + base, hd, q0);
  load_tile<DH>(dOs, dout + base, hd, q0);
  load_rows(Ls, Ds, lse, delta, bh, q0, hd.T);
  float adq[4][kCols];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int c = 0; c < kCols; ++c) adq[i][c] = 0.0f;
  for (int64_t kt = 0; kt <= qt; ++kt) {
    const int64_t k0 = kt * kTile;
    __syncthreads();
    load_tile<DH>(Ks, k + base, hd, k0);
    load_tile<DH>(Vs, v + base, hd, k0);
    __syncthreads();
    float sc[4][4], p[4][4], dp[4][4];
    tile_dots<DH>(sc, Qs, Ks, ty, tx);
    probs(p, sc, Ls, q0, k0, ty, tx, hd.T, scale);
    tile_dots<DH>(dp, dOs, Vs, ty, tx);
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < 4; ++j) Ps[(4 * ty + i) * kLP + tx + 16 * j] = p[i][j] * (dp[i][j] - Ds[4 * ty + i]);
    __syncthreads();
    // dQ[q] += sum_key dS[q][key] K[key]  (times scale at the end)
#pragma unroll 4
    for (int c = 0; c < kTile; ++c) {
      float s[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) s[i] = Ps[(4 * ty + i) * kLP + c];
#pragma unroll
      for (int cc = 0; cc < kCols; ++cc) {
        const float kk = Ks[c * kLD + tx + 16 * cc];
#pragma unroll
        for (int i = 0; i < 4; ++i) adq[i][cc] += s[i] * kk;
      }
    }
  }
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int64_t tq = q0 + 4 * ty + i;
    if (tq >= hd.T) continue;
#pragma unroll
    for (int c = 0; c < kCols; ++c) {
      const int d = tx + 16 * c;
      if (d < hd.Dh) dq[base + tq * hd.stride + d] = adq[i][c] * scale;
    }
  }
}

// ---- the bf16 path's row kernels (the products run on cuBLAS; core/cuda/ops_attention.cpp) ----

// Row r of a chunk's scores is query t = r % seq of one head; keys 0 .. t are visible.
__global__ void attention_probs_kernel(uint16_t* __restrict__ p, float* __restrict__ lse, const float* __restrict__ s,
                                       int64_t rows, int64_t seq, float scale, bool compute_lse) {
  __shared__ float scratch[32];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const int64_t t = r % seq;
    const float* sr = s + r * seq;
    float l;
    if (compute_lse) {
      float m = -INFINITY;
      for (int64_t c = threadIdx.x; c <= t; c += blockDim.x) m = fmaxf(m, scale * sr[c]);
      m = block_max(m, scratch);
      float sum = 0.0f;
      for (int64_t c = threadIdx.x; c <= t; c += blockDim.x) sum += expf(scale * sr[c] - m);
      sum = block_sum(sum, scratch);
      l = m + logf(sum);
      if (threadIdx.x == 0) lse[r] = l;
    } else {
      l = lse[r];
    }
    for (int64_t c = threadIdx.x; c < seq; c += blockDim.x)
      p[r * seq + c] = c <= t ? f32_to_bf16_bits(expf(scale * sr[c] - l)) : uint16_t{0};
  }
}

__global__ void attention_dscores_kernel(uint16_t* __restrict__ ds, const float* __restrict__ s,
                                         const float* __restrict__ dp, const float* __restrict__ lse,
                                         const float* __restrict__ delta, int64_t rows, int64_t seq, float scale) {
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const int64_t t = r % seq;
    const float l = lse[r], d = delta[r];
    for (int64_t c = threadIdx.x; c < seq; c += blockDim.x) {
      const int64_t i = r * seq + c;
      ds[i] = c <= t ? f32_to_bf16_bits(scale * expf(scale * s[i] - l) * (dp[i] - d)) : uint16_t{0};
    }
  }
}

// Raises a kernel's dynamic shared memory limit to what it uses (above the 48 KiB default).
template <typename Kernel>
int32_t allow_smem(Kernel kernel, int64_t bytes, const char* name) {
  const cudaError_t err =
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes));
  return cuda_fail(err, name, __FILE__, __LINE__);
}

int32_t check_attention(const char* entry, int64_t batch, int64_t seq, int64_t heads, int64_t head_dim) {
  if (int32_t c = check_sizes(entry, batch, seq, heads, head_dim); c != CMOE_CUDA_OK) return c;
  if (head_dim > geom::kAttnMaxHeadDim || batch * heads > geom::kMaxGridY) {
    return set_error(CMOE_CUDA_INVALID_ARGUMENT, "%s: head dim %lld (at most %d) and batch * heads %lld (at most %lld)",
                     entry, static_cast<long long>(head_dim), geom::kAttnMaxHeadDim,
                     static_cast<long long>(batch * heads), static_cast<long long>(geom::kMaxGridY));
  }
  return CMOE_CUDA_OK;
}

template <int DH>
int32_t forward(float* out, float* lse, const float* q, const float* k, const float* v, const Head& hd, int64_t bh,
                float scale, cudaStream_t s) {
  const int64_t smem = geom::attn_forward_smem(DH);
  if (int32_t c = allow_smem(attention_forward_kernel<DH>, smem, "cudaFuncSetAttribute(attention_forward_kernel)");
      c != CMOE_CUDA_OK)
    return c;
  const dim3 grid(static_cast<unsigned>(geom::attn_tiles(hd.T)), static_cast<unsigned>(bh));
  attention_forward_kernel<DH><<<grid, kThreads, smem, s>>>(out, lse, q, k, v, hd, scale);
  return CMOE_LAUNCHED("attention_forward_kernel");
}

template <int DH>
int32_t backward(float* dq, float* dk, float* dv, const float* delta, const float* dout, const float* q,
                 const float* k, const float* v, const float* lse, const Head& hd, int64_t bh, float scale,
                 cudaStream_t s) {
  const int64_t smem = geom::attn_backward_smem(DH);
  if (int32_t c = allow_smem(attention_dkdv_kernel<DH>, smem, "cudaFuncSetAttribute(attention_dkdv_kernel)");
      c != CMOE_CUDA_OK)
    return c;
  if (int32_t c = allow_smem(attention_dq_kernel<DH>, smem, "cudaFuncSetAttribute(attention_dq_kernel)");
      c != CMOE_CUDA_OK)
    return c;
  const dim3 grid(static_cast<unsigned>(geom::attn_tiles(hd.T)), static_cast<unsigned>(bh));
  attention_dkdv_kernel<DH><<<grid, kThreads, smem, s>>>(dk, dv, dout, q, k, v, lse, delta, hd, scale);
  if (int32_t c = CMOE_LAUNCHED("attention_dkdv_kernel"); c != CMOE_CUDA_OK) return c;
  attention_dq_kernel<DH><<<grid, kThreads, smem, s>>>(dq, dout, q, k, v, lse, delta, hd, scale);
  return CMOE_LAUNCHED("attention_dq_kernel");
}

}  // namespace

int32_t api_attention_forward_f32(float* out, float* lse, const float* q, const float* k, const float* v,
                                  int64_t batch, int64_t seq, int64_t heads, int64_t head_dim, float scale,
                                  CmoeCudaStream stream) {
  if (int32_t c = check_attention("attention_forward_f32", batch, seq, heads, head_dim); c != CMOE_CUDA_OK) return c;
  if (batch * seq * heads * head_dim == 0) return CMOE_CUDA_OK;
  const Head hd{seq, heads, head_dim, heads * head_dim};
  return geom::attn_head_bucket(head_dim) == 64
             ? forward<64>(out, lse, q, k, v, hd, batch * heads, scale, to_cuda(stream))
             : forward<128>(out, lse, q, k, v, hd, batch * heads, scale, to_cuda(stream));
}

int32_t api_attention_backward_f32(float* dq, float* dk, float* dv, float* delta, const float* dout, const float* q,
                                   const float* k, const float* v, const float* out, const float* lse, int64_t batch,
                                   int64_t seq, int64_t heads, int64_t head_dim, float scale, CmoeCudaStream stream) {
  if (int32_t c = check_attention("attention_backward_f32", batch, seq, heads, head_dim); c != CMOE_CUDA_OK) return c;
  if (batch * seq * heads * head_dim == 0) return CMOE_CUDA_OK;
  const Head hd{seq, heads, head_dim, heads * head_dim};
  const cudaStream_t s = to_cuda(stream);
  attention_delta_kernel<<<geom::grid_1d(batch * seq * heads), geom::kThreads, 0, s>>>(delta, dout, out, hd, batch);
  if (int32_t c = CMOE_LAUNCHED("attention_delta_kernel"); c != CMOE_CUDA_OK) return c;
  return geom::attn_head_bucket(head_dim) == 64
             ? backward<64>(dq, dk, dv, delta, dout, q, k, v, lse, hd, batch * heads, scale, s)
             : backward<128>(dq, dk, dv, delta, dout, q, k, v, lse, hd, batch * heads, scale, s);
}

int32_t api_attention_probs_bf16(uint16_t* p, float* lse, const float* s, int64_t rows, int64_t seq, float scale,
                                 int32_t compute_lse, CmoeCudaStream stream) {
  if (int32_t c = check_sizes("attention_probs_bf16", rows, seq); c != CMOE_CUDA_OK) return c;
  if (rows == 0 || seq == 0) return CMOE_CUDA_OK;
  attention_probs_kernel<<<geom::row_blocks(rows), geom::row_threads(seq), 0, to_cuda(stream)>>>(
      p, lse, s, rows, seq, scale, compute_lse != 0);
  return CMOE_LAUNCHED("attention_probs_kernel");
}

int32_t api_attention_dscores_bf16(uint16_t* ds, const float* s, const float* dp, const float* lse, const float* delta,
                                   int64_t rows, int64_t seq, float scale, CmoeCudaStream stream) {
  if (int32_t c = check_sizes("attention_dscores_bf16", rows, seq); c != CMOE_CUDA_OK) return c;
  if (rows == 0 || seq == 0) return CMOE_CUDA_OK;
  attention_dscores_kernel<<<geom::row_blocks(rows), geom::row_threads(seq), 0, to_cuda(stream)>>>(
      ds, s, dp, lse, delta, rows, seq, scale);
  return CMOE_LAUNCHED("attention_dscores_kernel");
}

int32_t api_attention_delta_f32(float* delta, const float* dout, const float* out, int64_t batch, int64_t seq,
                                int64_t heads, int64_t head_dim, CmoeCudaStream stream) {
  if (int32_t c = check_sizes("attention_delta_f32", batch, seq, heads, head_dim); c != CMOE_CUDA_OK) return c;
  if (batch * seq * heads == 0) return CMOE_CUDA_OK;
  const Head hd{seq, heads, head_dim, heads * head_dim};
  attention_delta_kernel<<<geom::grid_1d(batch * seq * heads), geom::kThreads, 0, to_cuda(stream)>>>(delta, dout, out,
                                                                                                     hd, batch);
  return CMOE_LAUNCHED("attention_delta_kernel");
}

}  // namespace cmoe::cuda_plugin
