// cuda_api.h — the C ABI between cmoe and its CUDA backend plugin, libcmoe_cuda.so.
//
// Why a plugin: cudart, cuBLAS/cuBLASLt and NCCL cost every process up to half a second of library
// initialisers, and a binary linked against them cannot start at all where they are missing
// (CPU login, preprocessing and evaluation nodes). So only the plugin links them; cmoe opens it
// with dlopen when a CUDA device is first asked for (core/cuda/plugin_loader.h,
// docs/cuda-backend.md).
//
// The plugin exports one extern "C" function, kCudaPluginEntry, returning a CmoeCudaApi: a
// version/size/signature header and a table of function pointers. Entries take raw pointers,
// sizes and opaque handles — argument order: outputs, inputs, sizes, then stream/handle — never
// cmoe C++ types, so the plugin needs no symbol of the executable and holds no copy of cmoe's
// globals. Everything above raw calls (shape checks, Tensor integration, the caching allocator,
// NcclCommunicator's polling) stays in core and parallel and calls through the table.
//
// Results. Unless noted, an entry returns a CmoeCudaCode; on failure last_error() (same thread,
// before the next call) holds a sentence naming the CUDA call, the plugin file and line and the
// library's error string. Entries named nccl_* return ncclResult_t values instead
// (CMOE_NCCL_SUCCESS, CMOE_NCCL_IN_PROGRESS, ...), because NcclCommunicator polls on them. A null
// CmoeCudaStream is the legacy default stream.
//
// ---- Adding an entry (e.g. the CUDA kernel of a new op) ----
// 1. Add one X(...) line to CMOE_CUDA_API_ENTRIES below: return type, name, (parameters).
//    The struct field, the plugin's table slot, the loader's null check and the ABI signature
//    (so a stale plugin is refused at load) all follow from that line.
// 2. Define `api_<name>` with exactly those parameters in core/cuda/plugin/ (a .cu file for a
//    kernel launcher; plugin/entries.h declares it for you). A mismatch fails the plugin's link.
// 3. Call it from core as plugin_status(api, api.<name>(...)) (core/cuda/plugin_loader.h), in a
//    core-side adapter that checks shapes — e.g. the op table's CUDA column (autograd/op_table.h).
// Bump CMOE_CUDA_ABI_VERSION only when an existing entry keeps its text but changes meaning
// (or a constant below changes value); a changed list changes the signature by itself.
#pragma once

#include <cstddef>
#include <cstdint>

// Opaque handles: cudaStream_t, cudaEvent_t, cublasHandle_t and ncclComm_t on the plugin side.
typedef struct CmoeCudaStream_* CmoeCudaStream;
typedef struct CmoeCudaEvent_* CmoeCudaEvent;
typedef struct CmoeBlasHandle_* CmoeBlasHandle;
typedef struct CmoeNcclComm_* CmoeNcclComm;

// CmoeCudaCode: absl::StatusCode's numbering, so core turns a code into a Status directly.
enum : int32_t {
  CMOE_CUDA_OK = 0,
  CMOE_CUDA_INVALID_ARGUMENT = 3,    // e.g. cudaErrorInvalidDevice
  CMOE_CUDA_RESOURCE_EXHAUSTED = 8,  // out of device memory (not sticky: the caller may retry)
  CMOE_CUDA_INTERNAL = 13,           // any other CUDA or cuBLAS failure, kernel launch errors
  CMOE_CUDA_UNAVAILABLE = 14,        // no driver, no device, driver too old
  CMOE_CUDA_NOT_READY = 1000,        // event_query only: the event's work has not finished
};

// memcpy kinds.
enum : int32_t { CMOE_CUDA_H2D = 1, CMOE_CUDA_D2H = 2, CMOE_CUDA_D2D = 3 };

// Element types of blas_matmul inputs and NCCL buffers.
enum : int32_t {
  CMOE_CUDA_F32 = 0,
  CMOE_CUDA_BF16 = 1,
  CMOE_CUDA_I32 = 2,
  CMOE_CUDA_I64 = 3,
  CMOE_CUDA_U8 = 4,
};

// NCCL: result values (as ncclResult_t), reduction ops, the unique id's size.
enum : int32_t {
  CMOE_NCCL_SUCCESS = 0,
  CMOE_NCCL_IN_PROGRESS = 7,
  CMOE_NCCL_NOT_BUILT = -1,  // returned by every nccl_* entry of a plugin built without NCCL
};
enum : int32_t { CMOE_NCCL_SUM = 0, CMOE_NCCL_MAX = 1, CMOE_NCCL_MIN = 2 };
enum : int32_t { CMOE_NCCL_UNIQUE_ID_BYTES = 128 };

// X(return type, name, (parameters)). Shapes are in elements unless a name says bytes.
#define CMOE_CUDA_API_ENTRIES(X)                                                                  \
  /* The failure text of this thread's last failed entry ("" if none). */                       \
  X(const char*, last_error, (void))                                                              \
  /* ---- devices ---- */                                                                        \
  /* Usable GPUs; UNAVAILABLE naming the reason (no driver: libcuda.so.1 missing) when none. */  \
  X(int32_t, device_count, (int32_t * count))                                                     \
  X(int32_t, get_device, (int32_t * device))                                                      \
  X(int32_t, set_device, (int32_t device))                                                        \
  /* name: NUL-terminated, at most name_bytes; total memory in bytes; compute capability */     \
  X(int32_t, device_info,                                                                         \
    (char* name, int32_t name_bytes, size_t* total_bytes, int32_t* cc_major, int32_t* cc_minor,   \
     int32_t device))                                                                             \
  /* ---- memory; copies are synchronous unless _async ---- */                                   \
  /* cudaMalloc on `device` (the current device is restored); RESOURCE_EXHAUSTED when full. */   \
  X(int32_t, device_malloc, (void** ptr, size_t bytes, int32_t device))                           \
  X(int32_t, device_free, (void* ptr, int32_t device))                                            \
  X(int32_t, memcpy_sync, (void* dst, const void* src, size_t bytes, int32_t kind))               \
  X(int32_t, memcpy_peer,                                                                         \
    (void* dst, int32_t dst_device, const void* src, int32_t src_device, size_t bytes))           \
  X(int32_t, memcpy_async,                                                                        \
    (void* dst, const void* src, size_t bytes, int32_t kind, CmoeCudaStream stream))              \
  X(int32_t, memset_async, (void* dst, int32_t byte, size_t bytes, CmoeCudaStream stream))        \
  /* ---- streams and events (on the current device) ---- */                                     \
  X(int32_t, stream_create, (CmoeCudaStream * stream, int32_t non_blocking))                      \
  X(int32_t, stream_destroy, (CmoeCudaStream stream))                                             \
  X(int32_t, stream_synchronize, (CmoeCudaStream stream))                                         \
  X(int32_t, stream_wait_event, (CmoeCudaStream stream, CmoeCudaEvent event))                     \
  /* Events are created without timing. event_query: OK, NOT_READY, or the failure. */           \
  X(int32_t, event_create, (CmoeCudaEvent * event))                                               \
  X(int32_t, event_destroy, (CmoeCudaEvent event))                                                \
  X(int32_t, event_record, (CmoeCudaEvent event, CmoeCudaStream stream))                          \
  X(int32_t, event_query, (CmoeCudaEvent event))                                                  \
  /* ---- element-wise kernels (queued on `stream`; the code reports launch errors) ---- */     \
  /* out[i] = bf16(x[i]), round to nearest even, NaN -> quiet NaN.  out: (n) bf16 bits */        \
  X(int32_t, f32_to_bf16, (uint16_t * out, const float* x, int64_t n, CmoeCudaStream stream))     \
  /* out[i] = f32(x[i]) (exact).  x: (n) bf16 bits */                                            \
  X(int32_t, bf16_to_f32, (float* out, const uint16_t* x, int64_t n, CmoeCudaStream stream))      \
  /* out[i] = a[i] + b[i]; out may alias a or b. */                                              \
  X(int32_t, add_f32,                                                                             \
    (float* out, const float* a, const float* b, int64_t n, CmoeCudaStream stream))               \
  /* ---- op kernels: the CUDA column of the op table (core/cuda/kernels.h has the contracts,  \
     core/ops the formulas); all queued on `stream`, sizes in elements ---- */                   \
  X(int32_t, fill_f32, (float* out, float value, int64_t n, CmoeCudaStream stream))              \
  /* out[i] = *value, a device scalar */                                                        \
  X(int32_t, fill_from_f32, (float* out, const float* value, int64_t n, CmoeCudaStream stream))  \
  X(int32_t, mul_f32,                                                                             \
    (float* out, const float* a, const float* b, int64_t n, CmoeCudaStream stream))               \
  X(int32_t, scale_f32, (float* out, const float* x, float s, int64_t n, CmoeCudaStream stream)) \
  /* out[0] = sum_i x[i], f64 accumulation in a fixed order (one block) */                      \
  X(int32_t, sum_f32, (float* out, const float* x, int64_t n, CmoeCudaStream stream))            \
  X(int32_t, sum_f64, (float* out, const double* x, int64_t n, CmoeCudaStream stream))           \
  X(int32_t, scale_rows_f32,                                                                      \
    (float* out, const float* x, const float* s, int64_t rows, int64_t cols,                     \
     CmoeCudaStream stream))                                                                      \
  /* out[r] = sum_c a[r, c] * b[r, c] (f64 accumulation) */                                     \
  X(int32_t, row_dot_f32,                                                                         \
    (float* out, const float* a, const float* b, int64_t rows, int64_t cols,                     \
     CmoeCudaStream stream))                                                                      \
  X(int32_t, add_bias_f32,                                                                        \
    (float* out, const float* x, const float* b, int64_t rows, int64_t cols,                     \
     CmoeCudaStream stream))                                                                      \
  /* out[c] += sum_r x[r, c]; partial: colsum_chunks(rows) * cols f64 of scratch */             \
  X(int32_t, col_sum_f32,                                                                         \
    (float* out, const float* x, int64_t rows, int64_t cols, double* partial,                    \
     CmoeCudaStream stream))                                                                      \
  X(int32_t, swiglu_forward_f32,                                                                  \
    (float* out, const float* gate, const float* up, int64_t n, CmoeCudaStream stream))           \
  /* dgate, dup: either may be null */                                                          \
  X(int32_t, swiglu_backward_f32,                                                                 \
    (float* dgate, float* dup, const float* dout, const float* gate, const float* up, int64_t n,  \
     CmoeCudaStream stream))                                                                      \
  X(int32_t, rmsnorm_forward_f32,                                                                 \
    (float* out, float* rstd, const float* x, const float* w, int64_t rows, int64_t cols,        \
     float eps, CmoeCudaStream stream))                                                           \
  /* dx (null: skipped) overwritten; dw (null: skipped) += its column sums through partial */   \
  X(int32_t, rmsnorm_backward_f32,                                                                \
    (float* dx, float* dw, double* partial, const float* dout, const float* x, const float* w,   \
     const float* rstd, int64_t rows, int64_t cols, CmoeCudaStream stream))                       \
  /* cos_t, sin_t: (seq, half) of positions pos0 + t, angles in f64 */                          \
  X(int32_t, rope_table_f32,                                                                      \
    (float* cos_t, float* sin_t, int64_t seq, int64_t half, float theta, int64_t pos0,           \
     CmoeCudaStream stream))                                                                      \
  X(int32_t, rope_apply_f32,                                                                      \
    (float* out, const float* x, const float* cos_t, const float* sin_t, int64_t batch,          \
     int64_t seq, int64_t heads, int64_t head_dim, float sign, CmoeCudaStream stream))            \
  X(int32_t, softmax_forward_f32,                                                                 \
    (float* out, const float* x, int64_t rows, int64_t cols, CmoeCudaStream stream))             \
  X(int32_t, softmax_backward_f32,                                                                \
    (float* dx, const float* dout, const float* out, int64_t rows, int64_t cols,                 \
     CmoeCudaStream stream))                                                                      \
  /* mask: (rows, cols) i32 or null */                                                          \
  X(int32_t, topk_forward_f32,                                                                    \
    (float* values, int32_t* indices, const float* x, const int32_t* mask, int64_t rows,         \
     int64_t cols, int32_t k, CmoeCudaStream stream))                                             \
  X(int32_t, topk_backward_f32,                                                                   \
    (float* dx, const float* dvalues, const int32_t* indices, int64_t rows, int64_t cols,        \
     int32_t k, CmoeCudaStream stream))                                                           \
  /* out[j] = x[idx[j]] for j < m; a zero row where idx is outside [0, n_x) */                  \
  X(int32_t, gather_rows_f32,                                                                     \
    (float* out, const float* x, const int32_t* idx, int64_t m, int64_t cols, int64_t n_x,       \
     CmoeCudaStream stream))                                                                      \
  /* scratch bytes row_scatter_add_f32 needs for m sources into n_out rows */                   \
  X(int32_t, row_scatter_workspace, (size_t * bytes, int64_t m, int64_t n_out))                   \
  /* out[idx[j]] += w[j] * src[j] (w null: 1), each row's sources summed in j order */          \
  X(int32_t, row_scatter_add_f32,                                                                 \
    (float* out, const float* src, const int32_t* idx, const float* w, int64_t m, int64_t cols,  \
     int64_t n_out, void* workspace, size_t workspace_bytes, CmoeCudaStream stream))             \
  /* dy[j] = w[j] * dout[idx[j]]; dw[j] = dout[idx[j]] . y[j]; either may be null */            \
  X(int32_t, scatter_rows_backward_f32,                                                           \
    (float* dy, float* dw, const float* dout, const float* y, const int32_t* idx, const float* w, \
     int64_t m, int64_t cols, CmoeCudaStream stream))                                             \
  /* q, k, v, out: (batch, seq, heads, head_dim), head_dim <= 128; lse: (batch, heads, seq) */  \
  X(int32_t, attention_forward_f32,                                                               \
    (float* out, float* lse, const float* q, const float* k, const float* v, int64_t batch,      \
     int64_t seq, int64_t heads, int64_t head_dim, float scale, CmoeCudaStream stream))           \
  /* delta: (batch, heads, seq) f32 scratch */                                                  \
  X(int32_t, attention_backward_f32,                                                              \
    (float* dq, float* dk, float* dv, float* delta, const float* dout, const float* q,           \
     const float* k, const float* v, const float* out, const float* lse, int64_t batch,          \
     int64_t seq, int64_t heads, int64_t head_dim, float scale, CmoeCudaStream stream))           \
  /* bf16 attention through GEMMs, a chunk of heads at a time: s (rows = heads * seq, seq) f32    \
     scores of one chunk; p: bf16 probabilities exp(scale s - lse) on and below the diagonal, 0   \
     above; lse: (rows) written from s when compute_lse, else read */                            \
  X(int32_t, attention_probs_bf16,                                                                \
    (uint16_t * p, float* lse, const float* s, int64_t rows, int64_t seq, float scale,            \
     int32_t compute_lse, CmoeCudaStream stream))                                                 \
  /* ds = bf16(scale * p * (dp - delta[row])), p = exp(scale s - lse) causal */                  \
  X(int32_t, attention_dscores_bf16,                                                              \
    (uint16_t * ds, const float* s, const float* dp, const float* lse, const float* delta,       \
     int64_t rows, int64_t seq, float scale, CmoeCudaStream stream))                              \
  /* delta[b, h, t] = sum_d dout[b, t, h, d] * out[b, t, h, d] */                                \
  X(int32_t, attention_delta_f32,                                                                 \
    (float* delta, const float* dout, const float* out, int64_t batch, int64_t seq, int64_t heads, \
     int64_t head_dim, CmoeCudaStream stream))                                                    \
  /* per row of logits (rows, vocab): lse; row_loss = lse - logit[target] (0 for target < 0) */ \
  X(int32_t, ce_rows_forward_f32,                                                                 \
    (float* lse, double* row_loss, const float* logits, const int32_t* targets, int64_t rows,    \
     int64_t vocab, CmoeCudaStream stream))                                                       \
  /* logits <- *dloss * (softmax - onehot(target)) in place; zero rows where target < 0 */      \
  X(int32_t, ce_rows_backward_f32,                                                                \
    (float* logits, const int32_t* targets, const float* lse, const float* dloss, int64_t rows,  \
     int64_t vocab, CmoeCudaStream stream))                                                       \
  X(int32_t, routing_weights_forward_f32,                                                         \
    (float* w, float* denom, const float* probs, const int32_t* idx, int64_t rows, int64_t k,    \
     int64_t experts, int32_t renorm, CmoeCudaStream stream))                                     \
  X(int32_t, routing_weights_backward_f32,                                                        \
    (float* dprobs, const float* dw, const float* w, const float* denom, const int32_t* idx,     \
     int64_t rows, int64_t k, int64_t experts, int32_t renorm, CmoeCudaStream stream))            \
  X(int32_t, z_loss_forward_f32,                                                                  \
    (float* out, float* lse, const float* logits, int64_t rows, int64_t experts,                 \
     CmoeCudaStream stream))                                                                      \
  X(int32_t, z_loss_backward_f32,                                                                 \
    (float* dlogits, const float* dout, const float* logits, const float* lse, int64_t rows,     \
     int64_t experts, CmoeCudaStream stream))                                                     \
  /* bias: (experts) or null */                                                                 \
  X(int32_t, router_topk_i32,                                                                     \
    (int32_t* idx, const float* probs, const float* bias, int64_t rows, int64_t experts,         \
     int64_t k, int32_t disable_top1, CmoeCudaStream stream))                                     \
  /* keep[n]: experts row n keeps; *max_keep = max(1, max_n keep[n]); both on the device */     \
  X(int32_t, router_topp_count,                                                                   \
    (int32_t* keep, int32_t* max_keep, const float* probs, int64_t rows, int64_t experts,        \
     float top_p, int32_t disable_top1, CmoeCudaStream stream))                                   \
  X(int32_t, router_topp_fill,                                                                    \
    (int32_t* idx, const float* probs, int64_t rows, int64_t experts, int64_t k, float top_p,    \
     int32_t disable_top1, CmoeCudaStream stream))                                                \
  X(int32_t, router_hash_i32,                                                                     \
    (int32_t* idx, const int32_t* ids, int64_t rows, int64_t k, int64_t experts, uint64_t seed,  \
     uint64_t rng_stream, CmoeCudaStream stream))                                                 \
  /* counts: (experts) i64; psum: (experts) f32 (zeros when probs is null) */                   \
  X(int32_t, expert_load,                                                                         \
    (int64_t* counts, float* psum, const int32_t* idx, int64_t pairs, const float* probs,        \
     int64_t rows, int64_t experts, CmoeCudaStream stream))                                       \
  /* offsets: (experts + 1) i64 on the device, the kept segment starts */                       \
  X(int32_t, dispatch_sort_i32,                                                                   \
    (int32_t* token_of_slot, int32_t* pair_of_slot, const int32_t* idx, const int64_t* offsets,  \
     int64_t pairs, int64_t k, int64_t experts, int64_t capacity, CmoeCudaStream stream))         \
  /* ---- optimizer, multi-tensor: chunk c covers elements [chunk_start[c], + chunk_len[c]) of   \
     tensor chunk_tensor[c]; every array lives on the device ---- */                           \
  X(int32_t, adamw_multi_f32,                                                                     \
    (float* const* params, float* const* exp_avg, float* const* exp_avg_sq,                      \
     const float* const* grads, const float* decay_mul, const int64_t* chunk_tensor,             \
     const int64_t* chunk_start, const int64_t* chunk_len, int64_t chunks, float beta1,           \
     float beta2, float eps, float step_size, float inv_sqrt_bc2, float grad_scale,              \
     CmoeCudaStream stream))                                                                      \
  /* chunk_sums[c] = sum of squares of chunk c (f64) */                                         \
  X(int32_t, sum_squares_multi_f32,                                                               \
    (double* chunk_sums, const float* const* x, const int64_t* chunk_tensor,                     \
     const int64_t* chunk_start, const int64_t* chunk_len, int64_t chunks,                       \
     CmoeCudaStream stream))                                                                      \
  /* ---- cuBLAS (a handle is bound to the device current at blas_create) ---- */                \
  X(int32_t, blas_create, (CmoeBlasHandle * handle))                                              \
  X(int32_t, blas_destroy, (CmoeBlasHandle handle))                                               \
  X(int32_t, blas_set_stream, (CmoeBlasHandle handle, CmoeCudaStream stream))                     \
  /* Row-major c = alpha * op(a) @ op(b) + beta * c on the handle's stream, f32 accumulation;   \
     a: (m, k) or (k, m) if trans_a, b: (k, n) or (n, k) if trans_b, both of `dtype` (F32 or     \
     BF16); c: (m, n) f32. beta == 0 never reads c. m, n, k >= 0. */                             \
  X(int32_t, blas_matmul,                                                                         \
    (float* c, const void* a, const void* b, int32_t dtype, int64_t m, int64_t n, int64_t k,      \
     int32_t trans_a, int32_t trans_b, float alpha, float beta, CmoeBlasHandle handle))           \
  /* The same over `batch` problems i with explicit leading dimensions (row-major: elements     \
     between rows) and strides between problems: c_i = alpha op(a_i) op(b_i) + beta c_i. */      \
  X(int32_t, blas_matmul_strided,                                                                 \
    (float* c, const void* a, const void* b, int32_t dtype, int64_t m, int64_t n, int64_t k,      \
     int64_t lda, int64_t ldb, int64_t ldc, int64_t stride_a, int64_t stride_b, int64_t stride_c, \
     int64_t batch, int32_t trans_a, int32_t trans_b, float alpha, float beta,                    \
     CmoeBlasHandle handle))                                                                      \
  /* The same over `groups` problems g (row-major, sizes m[g], n[g], k[g] >= 1, pointers a[g],     \
     b[g], c[g]; every array on the host) as one cublasGemmGroupedBatchedEx launch; device_ptrs: \
     3 * groups pointers of device scratch for the pointer arrays. */                            \
  X(int32_t, blas_grouped_matmul,                                                                 \
    (void* const* c, const void* const* a, const void* const* b, const int64_t* m,               \
     const int64_t* n, const int64_t* k, int64_t groups, int32_t dtype, int32_t trans_a,          \
     int32_t trans_b, float alpha, float beta, void** device_ptrs, CmoeBlasHandle handle))        \
  /* How blas_grouped_matmul ran last: 1 one grouped launch, 0 one GEMM per group (the library    \
     refused the grouped call for these types), -1 not yet called. */                            \
  X(int32_t, blas_grouped_path, (void))                                                           \
  /* ---- NCCL: one entry per NCCL call, returning its ncclResult_t ---- */                      \
  X(const char*, nccl_error_string, (int32_t result))                                             \
  X(const char*, nccl_last_error, (CmoeNcclComm comm))                                            \
  X(int32_t, nccl_get_unique_id, (uint8_t * id))                                                  \
  /* blocking = 0: non-blocking communicator (calls may return IN_PROGRESS; poll the comm). */   \
  X(int32_t, nccl_comm_init_rank,                                                                 \
    (CmoeNcclComm * comm, const uint8_t* id, int32_t nranks, int32_t rank, int32_t blocking))     \
  X(int32_t, nccl_comm_split,                                                                     \
    (CmoeNcclComm * new_comm, CmoeNcclComm comm, int32_t color, int32_t key, int32_t blocking))   \
  X(int32_t, nccl_comm_finalize, (CmoeNcclComm comm))                                             \
  X(int32_t, nccl_comm_destroy, (CmoeNcclComm comm))                                              \
  X(int32_t, nccl_comm_abort, (CmoeNcclComm comm))                                                \
  X(int32_t, nccl_comm_get_async_error, (int32_t * async_error, CmoeNcclComm comm))               \
  X(int32_t, nccl_comm_user_rank, (int32_t * rank, CmoeNcclComm comm))                            \
  X(int32_t, nccl_comm_count, (int32_t * count, CmoeNcclComm comm))                               \
  X(int32_t, nccl_group_start, (void))                                                            \
  X(int32_t, nccl_group_end, (void))                                                              \
  X(int32_t, nccl_all_reduce,                                                                     \
    (void* recv, const void* send, size_t count, int32_t dtype, int32_t op, CmoeNcclComm comm,    \
     CmoeCudaStream stream))                                                                      \
  X(int32_t, nccl_reduce_scatter,                                                                 \
    (void* recv, const void* send, size_t recv_count, int32_t dtype, int32_t op,                  \
     CmoeNcclComm comm, CmoeCudaStream stream))                                                   \
  X(int32_t, nccl_all_gather,                                                                     \
    (void* recv, const void* send, size_t send_bytes, CmoeNcclComm comm, CmoeCudaStream stream))  \
  X(int32_t, nccl_broadcast,                                                                      \
    (void* recv, const void* send, size_t bytes, int32_t root, CmoeNcclComm comm,                 \
     CmoeCudaStream stream))                                                                      \
  X(int32_t, nccl_send,                                                                           \
    (const void* buf, size_t bytes, int32_t peer, CmoeNcclComm comm, CmoeCudaStream stream))      \
  X(int32_t, nccl_recv,                                                                           \
    (void* buf, size_t bytes, int32_t peer, CmoeNcclComm comm, CmoeCudaStream stream))

// Bumped by hand only for a change of meaning the entry list does not show (see above).
#define CMOE_CUDA_ABI_VERSION 1

extern "C" {

struct CmoeCudaApi {
  uint32_t abi_version;  // CMOE_CUDA_ABI_VERSION
  uint32_t struct_size;  // sizeof(CmoeCudaApi)
  uint64_t signature;    // cmoe_cuda_api_signature(): a hash of CMOE_CUDA_API_ENTRIES' text
  int32_t has_nccl;      // 0: built without NCCL (every nccl_* entry returns CMOE_NCCL_NOT_BUILT)
  int32_t reserved;
#define CMOE_CUDA_API_FIELD_(ret, name, params) ret(*name) params;
  CMOE_CUDA_API_ENTRIES(CMOE_CUDA_API_FIELD_)
#undef CMOE_CUDA_API_FIELD_
};

// The plugin's one exported symbol (its name is kCudaPluginEntry).
typedef const CmoeCudaApi* (*CmoeCudaApiFn)(void);

}  // extern "C"

inline constexpr const char* kCudaPluginEntry = "cmoe_cuda_plugin_api";

// FNV-1a (64-bit) of the entry list as text: any edit to a name, type or parameter changes it.
constexpr uint64_t cmoe_cuda_api_signature() {
#define CMOE_CUDA_API_TEXT_(ret, name, params) #ret " " #name #params ";"
  const char* text = CMOE_CUDA_API_ENTRIES(CMOE_CUDA_API_TEXT_);
#undef CMOE_CUDA_API_TEXT_
  uint64_t h = 14695981039346656037ull;
  for (const char* p = text; *p != '\0'; ++p) {
    h ^= static_cast<unsigned char>(*p);
    h *= 1099511628211ull;
  }
  return h;
}
