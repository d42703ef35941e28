// kernels.h — the op table's CUDA column (autograd/op_table.h): one adapter per CPU kernel of
// core/ops, with exactly its signature and contract, for tensors on a CUDA device.
//
// An adapter checks shapes, dtypes and devices (a mismatch is a caller bug: CMOE_CHECK), takes
// the compute stream and the device's cuBLAS handle (core/cuda/context.h), allocates any scratch
// from the caching allocator (tensors, never a raw cudaMalloc), and queues the plugin's kernels
// (core/cuda/plugin/) through the ABI table. It returns before the GPU has finished; the results
// are ordered before every later kernel and copy on the compute stream.
//
// Where the CUDA version differs from the CPU reference beyond rounding, it says so below:
//   * reductions (sums, norms, column sums, the loss) accumulate in f64 like the CPU's, but in a
//     tree order fixed by the launch geometry rather than serially: deterministic run to run,
//     equal to the CPU within f32 rounding;
//   * indexed accumulations (embedding / gather_rows backward, scatter_add_rows forward) sum each
//     destination's sources in index order (a stable radix sort by destination first), as the
//     CPU does;
//   * invalid indices (ids >= V, expert ids >= E) read as zero rows instead of aborting: the
//     device cannot abort, so callers validate indices that come from users on the host (the
//     model checks token ids and targets before uploading them);
//   * cross_entropy processes up to kCrossEntropyLogitElems logits per chunk whatever `chunk`
//     says (larger matmuls; the result does not depend on the chunking).
#pragma once

#include <cstdint>
#include <span>

#include "core/tensor.h"

namespace cmoe::cuda {

// Logits (f32) held at once by the CUDA cross_entropy: 64 Mi floats = 256 MiB.
inline constexpr int64_t kCrossEntropyLogitElems = int64_t{1} << 26;

// ---- elementwise (core/ops/elementwise.h) ----
void add_forward(Tensor& out, const Tensor& a, const Tensor& b);
void add_backward(Tensor& da, Tensor& db, const Tensor& dout);
void mul_forward(Tensor& out, const Tensor& a, const Tensor& b);
void mul_backward(Tensor& da, Tensor& db, const Tensor& dout, const Tensor& a, const Tensor& b);
void scale_forward(Tensor& out, const Tensor& x, float s);
void scale_backward(Tensor& dx, const Tensor& dout, float s);
void sum_forward(Tensor& out, const Tensor& x);
void sum_backward(Tensor& dx, const Tensor& dout);
void scale_rows_forward(Tensor& out, const Tensor& x, const Tensor& s);
void scale_rows_backward(Tensor& dx, Tensor& ds, const Tensor& dout, const Tensor& x, const Tensor& s);
void add_bias_forward(Tensor& out, const Tensor& x, const Tensor& b);
void add_bias_backward(Tensor& dx, Tensor& db, const Tensor& dout);

// ---- network ops (embedding, rmsnorm, rope, swiglu, softmax, topk, permute) ----
void embedding_forward(Tensor& out, const Tensor& table, const Tensor& ids);
void embedding_backward(Tensor& dtable, const Tensor& dout, const Tensor& ids);
void rmsnorm_forward(Tensor& out, Tensor& rstd, const Tensor& x, const Tensor& w, float eps);
void rmsnorm_backward(Tensor& dx, Tensor& dw, const Tensor& dout, const Tensor& x, const Tensor& w,
                      const Tensor& rstd);
void rope_forward(Tensor& out, const Tensor& x, float theta, int64_t pos0);
void rope_backward(Tensor& dx, const Tensor& dout, float theta, int64_t pos0);
void swiglu_forward(Tensor& out, const Tensor& gate, const Tensor& up);
void swiglu_backward(Tensor& dgate, Tensor& dup, const Tensor& dout, const Tensor& gate,
                     const Tensor& up);
void softmax_forward(Tensor& out, const Tensor& x);
void softmax_backward(Tensor& dx, const Tensor& dout, const Tensor& out);
// A row with fewer than k unmasked entries gets index -1 and value NaN in its last places (the
// CPU aborts instead).
void topk_forward(Tensor& values, Tensor& indices, const Tensor& x, int k, const Tensor& mask);
void topk_backward(Tensor& dx, const Tensor& dvalues, const Tensor& indices);
void gather_rows_forward(Tensor& out, const Tensor& x, const Tensor& idx);
void gather_rows_backward(Tensor& dx, const Tensor& dout, const Tensor& idx);
void scatter_add_rows_forward(Tensor& out, const Tensor& y, const Tensor& idx, const Tensor& w);
void scatter_add_rows_backward(Tensor& dy, Tensor& dw, const Tensor& dout, const Tensor& y,
                               const Tensor& idx, const Tensor& w);

// ---- matmul ops: cuBLAS (bf16 or f32 inputs, f32 accumulation and outputs) ----
Tensor to_compute(const Tensor& t, DType compute_dtype);
void linear_forward(Tensor& out, const Tensor& x, const Tensor& w, DType compute_dtype);
void linear_backward(Tensor& dx, Tensor& dw, const Tensor& dout, const Tensor& x, const Tensor& w,
                     DType compute_dtype, bool accumulate_dw);
// One grouped GEMM per call (cublasGemmGroupedBatchedEx over the non-empty segments; see
// core/cuda/grouped_gemm.h); offsets stay on the host, as the problem sizes cuBLAS takes.
void grouped_linear_forward(Tensor& out, const Tensor& x, const Tensor& w,
                            std::span<const int64_t> offsets, DType compute_dtype);
void grouped_linear_backward(Tensor& dx, Tensor& dw, const Tensor& dout, const Tensor& x,
                             const Tensor& w, std::span<const int64_t> offsets,
                             DType compute_dtype, bool accumulate_dw);

// ---- fused attention (a tiled flash kernel in f32) and the fused LM-head cross-entropy ----
// f32: the flash kernels, head dims up to 128. bf16: the products on cuBLAS (bf16 inputs, f32
// accumulation) over a chunk of heads at a time, scores materialised per chunk (up to
// kAttentionScoreBytes), the causal softmax and dS in f32 row kernels.
inline constexpr int64_t kAttentionScoreBytes = int64_t{1} << 29;  // 512 MiB
void attention_forward(Tensor& out, Tensor& lse, const Tensor& q, const Tensor& k, const Tensor& v,
                       float scale, DType compute_dtype = DType::kF32);
void attention_backward(Tensor& dq, Tensor& dk, Tensor& dv, const Tensor& dout, const Tensor& q,
                        const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse,
                        float scale, DType compute_dtype = DType::kF32);
void cross_entropy_forward(Tensor& loss, Tensor& lse, const Tensor& h, const Tensor& w,
                           const Tensor& targets, int64_t chunk, DType compute_dtype);
void cross_entropy_backward(Tensor& dh, Tensor& dw, const Tensor& dloss, const Tensor& h,
                            const Tensor& w, const Tensor& targets, const Tensor& lse,
                            int64_t chunk, DType compute_dtype);

// ---- routing (core/ops/routing.h) ----
void routing_weights_forward(Tensor& w, Tensor& denom, const Tensor& probs, const Tensor& idx,
                             bool renorm);
void routing_weights_backward(Tensor& dprobs, const Tensor& dw, const Tensor& w,
                              const Tensor& denom, const Tensor& idx, bool renorm);
void z_loss_forward(Tensor& out, Tensor& lse, const Tensor& logits);
void z_loss_backward(Tensor& dlogits, const Tensor& dout, const Tensor& logits, const Tensor& lse);
void router_topk(Tensor& indices, const Tensor& probs, const Tensor& bias, bool disable_top1);
// Two kernels around one device-to-host copy: the widest row's expert count sizes the result.
Tensor router_topp(const Tensor& probs, float top_p, bool disable_top1);
void router_hash(Tensor& indices, const Tensor& ids, int64_t num_experts, uint64_t seed);
void expert_load(Tensor& counts, Tensor& psum, const Tensor& idx, const Tensor& probs);
void dispatch_sort(Tensor& token_of_slot, Tensor& pair_of_slot, const Tensor& idx,
                   std::span<const int64_t> offsets, int64_t capacity);

}  // namespace cmoe::cuda
