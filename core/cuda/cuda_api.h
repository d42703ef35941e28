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
