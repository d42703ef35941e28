// routing.cu — the MoE router's and dispatcher's kernels on the GPU (contracts in
// core/cuda/cuda_api.h, formulas and CPU twins in core/ops/routing.h): routing weights and the
// z-loss with their gradients, expert selection (top-k with bias and disable-top1, top-p, the hash
// table through a device Philox), the per-expert load, and the dispatch's counting sort.
//
// Selection follows the CPU's total order exactly — score descending, then expert index
// ascending — by repeated arg-max over the not-yet-chosen experts (k and E are small), so both
// backends choose the same experts. The counting sort gives one block per expert, which scans the
// pairs in order with a block-wide prefix count: a pair's slot is its rank among its expert's
// pairs, so slots follow token order and the result is the CPU's to the bit.
#include "core/cuda/plugin/device_util.cuh"
#include "core/cuda/plugin/entries.h"

namespace cmoe::cuda_plugin {

namespace {

constexpr float kRenormEps = 1e-9f;  // as core/ops/routing.cpp
constexpr int kMaxHashK = 64;

__global__ void routing_weights_forward_kernel(float* __restrict__ w, float* __restrict__ denom,
                                               const float* __restrict__ probs, const int32_t* __restrict__ idx,
                                               int64_t rows, int64_t k, int64_t experts, bool renorm) {
  CMOE_GRID_STRIDE(n, rows) {
    double tot = 0;
    for (int64_t j = 0; j < k; ++j) {
      const int32_t e = idx[n * k + j];
      if (e >= 0 && e < experts) tot += probs[n * experts + e];
    }
    const float z = renorm ? fmaxf(static_cast<float>(tot), kRenormEps) : 1.0f;
    denom[n] = z;
    for (int64_t j = 0; j < k; ++j) {
      const int32_t e = idx[n * k + j];
      w[n * k + j] = e >= 0 && e < experts ? probs[n * experts + e] / z : 0.0f;
    }
  }
}

__global__ void routing_weights_backward_kernel(float* __restrict__ dprobs, const float* __restrict__ dw,
                                                const float* __restrict__ w, const float* __restrict__ denom,
                                                const int32_t* __restrict__ idx, int64_t rows, int64_t k,
                                                int64_t experts, bool renorm) {
  CMOE_GRID_STRIDE(n, rows) {
    for (int64_t e = 0; e < experts; ++e) dprobs[n * experts + e] = 0.0f;
    double dot = 0;
    if (renorm)
      for (int64_t j = 0; j < k; ++j) dot += static_cast<double>(dw[n * k + j]) * w[n * k + j];
    for (int64_t j = 0; j < k; ++j) {
      const int32_t e = idx[n * k + j];
      if (e < 0 || e >= experts) continue;
      dprobs[n * experts + e] += static_cast<float>((dw[n * k + j] - dot) / denom[n]);
    }
  }
}

// lse[n] = logsumexp(logits[n, :]) (f64 sum), a warp per row.
__global__ void row_lse_kernel(float* __restrict__ lse, const float* __restrict__ logits, int64_t rows,
                               int64_t experts) {
  const int lane = threadIdx.x % 32;
  for (int64_t r = blockIdx.x * geom::kRowsPerWarpBlock + threadIdx.x / 32; r < rows;
       r += int64_t{gridDim.x} * geom::kRowsPerWarpBlock) {
    const float* x = logits + r * experts;
    float m = -INFINITY;
    for (int64_t e = lane; e < experts; e += 32) m = fmaxf(m, x[e]);
    m = warp_max(m);
    double s = 0;
    for (int64_t e = lane; e < experts; e += 32) s += exp(static_cast<double>(x[e]) - m);
    s = warp_sum(s);
    if (lane == 0) lse[r] = static_cast<float>(m + log(s));
  }
}

// out = mean_n lse[n]^2 (f64), one block.
__global__ void mean_square_kernel(float* __restrict__ out, const float* __restrict__ lse, int64_t rows) {
  __shared__ double scratch[32];
  double acc = 0;
  for (int64_t i = threadIdx.x; i < rows; i += blockDim.x) acc += static_cast<double>(lse[i]) * lse[i];
  acc = block_sum(acc, scratch);
  if (threadIdx.x == 0) *out = static_cast<float>(acc / static_cast<double>(rows));
}

__global__ void z_loss_backward_kernel(float* __restrict__ d, const float* __restrict__ dout,
                                       const float* __restrict__ logits, const float* __restrict__ lse, int64_t rows,
                                       int64_t experts) {
  const float scale = 2.0f * *dout / static_cast<float>(rows);
  CMOE_GRID_STRIDE(i, rows * experts) {
    const float z = lse[i / experts];
    d[i] = scale * z * expf(logits[i] - z);
  }
}

// The next expert after (last_score, last) in the order (score desc, index asc), skipping `skip`;
// -1 when none is left.
template <typename Score>
__device__ int32_t next_in_order(const Score& score, int64_t experts, float last_score, int32_t last, int32_t skip) {
  int32_t best = -1;
  float best_score = 0.0f;
  for (int32_t e = 0; e < experts; ++e) {
    if (e == skip) continue;
    const float s = score(e);
    const bool after_last = last < 0 || s < last_score || (s == last_score && e > last);
    if (!after_last) continue;
    if (best < 0 || s > best_score) best = e, best_score = s;  // ties keep the lower index
  }
  return best;
}

__device__ int32_t argmax_first(const float* s, int64_t experts) {
  int32_t best = 0;
  for (int32_t e = 1; e < experts; ++e)
    if (s[e] > s[best]) best = e;
  return best;
}

__global__ void router_topk_kernel(int32_t* __restrict__ idx, const float* __restrict__ probs,
                                   const float* __restrict__ bias, int64_t rows, int64_t experts, int64_t k,
                                   bool disable_top1) {
  CMOE_GRID_STRIDE(n, rows) {
    const float* s = probs + n * experts;
    auto score = [s, bias](int32_t e) { return bias != nullptr ? s[e] + bias[e] : s[e]; };
    const int32_t skip = disable_top1 ? argmax_first(s, experts) : -1;
    int32_t last = -1;
    float last_score = 0.0f;
    for (int64_t j = 0; j < k; ++j) {
      const int32_t e = last == -2 ? -1 : next_in_order(score, experts, last_score, last, skip);
      idx[n * k + j] = e;
      if (e < 0) {
        last = -2;  // exhausted: the rest stay -1
        continue;
      }
      last = e;
      last_score = score(e);
    }
  }
}

// Walks row n's experts in (s desc, index asc) order from the first (second with disable_top1)
// until the cumulative s exceeds top_p; writes them to out (if given, up to k) and returns how many.
__device__ int64_t topp_walk(const float* s, int64_t experts, float top_p, bool disable_top1, int32_t* out,
                             int64_t k) {
  auto score = [s](int32_t e) { return s[e]; };
  int32_t last = -1;
  float last_score = 0.0f;
  double cum = 0;
  int64_t kept = 0;
  for (int64_t j = 0; j < experts; ++j) {
    const int32_t e = next_in_order(score, experts, last_score, last, -1);
    if (e < 0) break;  // only NaN scores are left
    last = e;
    last_score = s[e];
    if (j == 0 && disable_top1) continue;
    if (out != nullptr && kept < k) out[kept] = e;
    ++kept;
    cum += s[e];
    if (cum > top_p) break;
  }
  return kept;
}

__global__ void router_topp_count_kernel(int32_t* __restrict__ keep, int32_t* __restrict__ max_keep,
                                         const float* __restrict__ probs, int64_t rows, int64_t experts, float top_p,
                                         bool disable_top1) {
  CMOE_GRID_STRIDE(n, rows) {
    const int32_t c = static_cast<int32_t>(topp_walk(probs + n * experts, experts, top_p, disable_top1, nullptr, 0));
    keep[n] = c;
    atomicMax(max_keep, c);
  }
}

__global__ void set_one_kernel(int32_t* v) { *v = 1; }

__global__ void router_topp_fill_kernel(int32_t* __restrict__ idx, const float* __restrict__ probs, int64_t rows,
                                        int64_t experts, int64_t k, float top_p, bool disable_top1) {
  CMOE_GRID_STRIDE(n, rows) {
    const int64_t c = topp_walk(probs + n * experts, experts, top_p, disable_top1, idx + n * k, k);
    for (int64_t j = c; j < k; ++j) idx[n * k + j] = -1;
  }
}

// Philox-4x32-10, as core/rng.cpp: the u32 at (seed, stream, offset).
__device__ uint32_t philox_u32(uint64_t seed, uint64_t stream, uint64_t offset) {
  const uint64_t blk = offset / 4;
  uint32_t c0 = static_cast<uint32_t>(blk), c1 = static_cast<uint32_t>(blk >> 32);
  uint32_t c2 = static_cast<uint32_t>(stream), c3 = static_cast<uint32_t>(stream >> 32);
  uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
  for (int round = 0; round < 10; ++round) {
    const uint32_t hi0 = __umulhi(0xD2511F53u, c0), lo0 = 0xD2511F53u * c0;
    const uint32_t hi1 = __umulhi(0xCD9E8D57u, c2), lo1 = 0xCD9E8D57u * c2;
    const uint32_t n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
    c0 = n0;
    c1 = lo1;
    c2 = n2;
    c3 = lo0;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  const uint32_t out[4] = {c0, c1, c2, c3};
  return out[offset % 4];
}

__global__ void router_hash_kernel(int32_t* __restrict__ idx, const int32_t* __restrict__ ids, int64_t rows,
                                   int64_t k, int64_t experts, uint64_t seed, uint64_t rng_stream) {
  CMOE_GRID_STRIDE(n, rows) {
    int32_t* out = idx + n * k;
    const uint64_t id = static_cast<uint64_t>(static_cast<int64_t>(ids[n]));
    for (int64_t j = 0; j < k; ++j) {
      int64_t r = philox_u32(seed, rng_stream, id * 64 + j) % (experts - j);
      int32_t e = 0;
      for (;; ++e) {
        bool taken = false;
        for (int64_t i = 0; i < j; ++i) taken = taken || out[i] == e;
        if (!taken && r-- == 0) break;
      }
      out[j] = e;
    }
  }
}

__global__ void expert_count_kernel(unsigned long long* __restrict__ counts, const int32_t* __restrict__ idx,
                                    int64_t pairs, int64_t experts) {
  CMOE_GRID_STRIDE(p, pairs) {
    const int32_t e = idx[p];
    if (e >= 0 && e < experts) atomicAdd(counts + e, 1ull);  // integers: order does not matter
  }
}

// psum[e] = sum_n probs[n, e] (f64), one block per expert.
__global__ void expert_psum_kernel(float* __restrict__ psum, const float* __restrict__ probs, int64_t rows,
                                   int64_t experts) {
  __shared__ double scratch[32];
  for (int64_t e = blockIdx.x; e < experts; e += gridDim.x) {
    double acc = 0;
    for (int64_t n = threadIdx.x; n < rows; n += blockDim.x) acc += probs[n * experts + e];
    acc = block_sum(acc, scratch);
    if (threadIdx.x == 0) psum[e] = static_cast<float>(acc);
  }
}

// Block e places expert e's pairs: scans the pairs in chunks of blockDim.x, each pair's rank
// among e's pairs = pairs of e before the chunk + before it in the chunk (warp ballots, then the
// warps' counts in order).
__global__ void dispatch_sort_kernel(int32_t* __restrict__ token_of_slot, int32_t* __restrict__ pair_of_slot,
                                     const int32_t* __restrict__ idx, const int64_t* __restrict__ offsets,
                                     int64_t pairs, int64_t k, int64_t capacity) {
  __shared__ int warp_count[32];
  const int32_t e = static_cast<int32_t>(blockIdx.x);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  const int64_t slot0 = offsets[e];
  int64_t seen = 0;
  for (int64_t c0 = 0; c0 < pairs; c0 += blockDim.x) {
    const int64_t p = c0 + threadIdx.x;
    const bool mine = p < pairs && idx[p] == e;
    const unsigned ballot = __ballot_sync(0xffffffffu, mine);
    if (lane == 0) warp_count[warp] = __popc(ballot);
    __syncthreads();
    int before = 0, total = 0;
    for (int w = 0; w < warps; ++w) {
      if (w < warp) before += warp_count[w];
      total += warp_count[w];
    }
    const int64_t rank = seen + before + __popc(ballot & ((1u << lane) - 1u));
    if (mine && rank < capacity) {
      token_of_slot[slot0 + rank] = static_cast<int32_t>(p / k);
      pair_of_slot[slot0 + rank] = static_cast<int32_t>(p);
    }
    seen += total;
    __syncthreads();  // warp_count is rewritten by the next chunk
  }
}

}  // namespace

int32_t api_routing_weights_forward_f32(float* w, float* denom, const float* probs, const int32_t* idx, int64_t rows,
                                        int64_t k, int64_t experts, int32_t renorm, CmoeCudaStream stream) {
  if (int32_t c = check_sizes("routing_weights_forward_f32", rows, k, experts); c != CMOE_CUDA_OK) return c;
  if (rows == 0) return CMOE_CUDA_OK;
  routing_weights_forward_kernel<<<geom::grid_1d(rows), geom::kThreads, 0, to_cuda(stream)>>>(w, denom, probs, idx,
                                                                                              rows, k, experts, renorm);
  return CMOE_LAUNCHED("routing_weights_forward_kernel");
}

int32_t api_routing_weights_backward_f32(float* dprobs, const float* dw, const float* w, const float* denom,
                                         const int32_t* idx, int64_t rows, int64_t k, int64_t experts, int32_t renorm,
                                         CmoeCudaStream stream) {
  if (int32_t c = check_sizes("routing_weights_backward_f32", rows, k, experts); c != CMOE_CUDA_OK) return c;
  if (rows == 0) return CMOE_CUDA_OK;
  routing_weights_backward_kernel<<<geom::grid_1d(rows), geom::kThreads, 0, to_cuda(stream)>>>(
      dprobs, dw, w, denom, idx, rows, k, experts, renorm);
  return CMOE_LAUNCHED("routing_weights_backward_kernel");
}

int32_t api_z_loss_forward_f32(float* out, float* lse, const float* logits, int64_t rows, int64_t experts,
                               CmoeCudaStream stream) {
  if (int32_t c = check_sizes("z_loss_forward_f32", rows, experts); c != CMOE_CUDA_OK) return c;
  const cudaStream_t s = to_cuda(stream);
  if (rows == 0) {
    CUDA_TRY(cudaMemsetAsync(out, 0, sizeof(float), s));  // the CPU's 0 / 0 would be NaN; no rows, no loss
    return CMOE_CUDA_OK;
  }
  row_lse_kernel<<<geom::warp_row_blocks(rows), geom::kThreads, 0, s>>>(lse, logits, rows, experts);
  if (int32_t c = CMOE_LAUNCHED("row_lse_kernel"); c != CMOE_CUDA_OK) return c;
  mean_square_kernel<<<1, geom::kReduceThreads, 0, s>>>(out, lse, rows);
  return CMOE_LAUNCHED("mean_square_kernel");
}

int32_t api_z_loss_backward_f32(float* dlogits, const float* dout, const float* logits, const float* lse, int64_t rows,
                                int64_t experts, CmoeCudaStream stream) {
  if (int32_t c = check_sizes("z_loss_backward_f32", rows, experts); c != CMOE_CUDA_OK) return c;
  if (rows * experts == 0) return CMOE_CUDA_OK;
  z_loss_backward_kernel<<<geom::grid_1d(rows * experts), geom::kThreads, 0, to_cuda(stream)>>>(dlogits, dout, logits,
                                                                                               lse, rows, experts);
  return CMOE_LAUNCHED("z_loss_backward_kernel");
}

int32_t api_router_topk_i32(int32_t* idx, const float* probs, const float* bias, int64_t rows, int64_t experts,
                            int64_t k, int32_t disable_top1, CmoeCudaStream stream) {
  if (int32_t c = check_sizes("router_topk_i32", rows, experts, k); c != CMOE_CUDA_OK) return c;
  if (rows * k == 0) return CMOE_CUDA_OK;
  router_topk_kernel<<<geom::grid_1d(rows), geom::kThreads, 0, to_cuda(stream)>>>(idx, probs, bias, rows, experts, k,
                                                                                  disable_top1 != 0);
  return CMOE_LAUNCHED("router_topk_kernel");
}

int32_t api_router_topp_count(int32_t* keep, int32_t* max_keep, const float* probs, int64_t rows, int64_t experts,
                              float top_p, int32_t disable_top1, CmoeCudaStream stream) {
  if (int32_t c = check_sizes("router_topp_count", rows, experts); c != CMOE_CUDA_OK) return c;
  const cudaStream_t s = to_cuda(stream);
  // max_keep starts at 1: the CPU's K is at least 1 even for no rows.
  set_one_kernel<<<1, 1, 0, s>>>(max_keep);
  if (int32_t c = CMOE_LAUNCHED("set_one_kernel"); c != CMOE_CUDA_OK) return c;
  if (rows == 0 || experts == 0) return CMOE_CUDA_OK;
  router_topp_count_kernel<<<geom::grid_1d(rows), geom::kThreads, 0, s>>>(keep, max_keep, probs, rows, experts, top_p,
                                                                          disable_top1 != 0);
  return CMOE_LAUNCHED("router_topp_count_kernel");
}

int32_t api_router_topp_fill(int32_t* idx, const float* probs, int64_t rows, int64_t experts, int64_t k, float top_p,
                             int32_t disable_top1, CmoeCudaStream stream) {
  if (int32_t c = check_sizes("router_topp_fill", rows, experts, k); c != CMOE_CUDA_OK) return c;
  if (rows * k == 0) return CMOE_CUDA_OK;
  router_topp_fill_kernel<<<geom::grid_1d(rows), geom::kThreads, 0, to_cuda(stream)>>>(idx, probs, rows, experts, k,
                                                                                       top_p, disable_top1 != 0);
  return CMOE_LAUNCHED("router_topp_fill_kernel");
}

int32_t api_router_hash_i32(int32_t* idx, const int32_t* ids, int64_t rows, int64_t k, int64_t experts, uint64_t seed,
                            uint64_t rng_stream, CmoeCudaStream stream) {
  if (int32_t c = check_sizes("router_hash_i32", rows, k, experts); c != CMOE_CUDA_OK) return c;
  if (k > experts || k > kMaxHashK) {
    return set_error(CMOE_CUDA_INVALID_ARGUMENT, "router_hash_i32: %lld distinct choices of %lld experts (at most %d)",
                     static_cast<long long>(k), static_cast<long long>(experts), kMaxHashK);
  }
  if (rows * k == 0) return CMOE_CUDA_OK;
  router_hash_kernel<<<geom::grid_1d(rows), geom::kThreads, 0, to_cuda(stream)>>>(idx, ids, rows, k, experts, seed,
                                                                                  rng_stream);
  return CMOE_LAUNCHED("router_hash_kernel");
}

int32_t api_expert_load(int64_t* counts, float* psum, const int32_t* idx, int64_t pairs, const float* probs,
                        int64_t rows, int64_t experts, CmoeCudaStream stream) {
  if (int32_t c = check_sizes("expert_load", pairs, rows, experts); c != CMOE_CUDA_OK) return c;
  if (experts == 0) return CMOE_CUDA_OK;
  const cudaStream_t s = to_cuda(stream);
  CUDA_TRY(cudaMemsetAsync(counts, 0, static_cast<size_t>(experts) * sizeof(int64_t), s));
  if (pairs > 0) {
    expert_count_kernel<<<geom::grid_1d(pairs), geom::kThreads, 0, s>>>(
        reinterpret_cast<unsigned long long*>(counts), idx, pairs, experts);
    if (int32_t c = CMOE_LAUNCHED("expert_count_kernel"); c != CMOE_CUDA_OK) return c;
  }
  if (probs == nullptr || rows == 0) {
    CUDA_TRY(cudaMemsetAsync(psum, 0, static_cast<size_t>(experts) * sizeof(float), s));
    return CMOE_CUDA_OK;
  }
  expert_psum_kernel<<<geom::row_blocks(experts), geom::kThreads, 0, s>>>(psum, probs, rows, experts);
  return CMOE_LAUNCHED("expert_psum_kernel");
}

int32_t api_dispatch_sort_i32(int32_t* token_of_slot, int32_t* pair_of_slot, const int32_t* idx,
                              const int64_t* offsets, int64_t pairs, int64_t k, int64_t experts, int64_t capacity,
                              CmoeCudaStream stream) {
  if (int32_t c = check_sizes("dispatch_sort_i32", pairs, k, experts, capacity); c != CMOE_CUDA_OK) return c;
  if (experts > 0x7fffffff) return set_error(CMOE_CUDA_INVALID_ARGUMENT, "dispatch_sort_i32: too many experts");
  if (pairs == 0 || experts == 0 || k == 0) return CMOE_CUDA_OK;
  dispatch_sort_kernel<<<static_cast<unsigned>(experts), geom::kSortThreads, 0, to_cuda(stream)>>>(
      token_of_slot, pair_of_slot, idx, offsets, pairs, k, capacity);
  return CMOE_LAUNCHED("dispatch_sort_kernel");
}

}  // namespace cmoe::cuda_plugin
