// recording_plugin.cpp — a CUDA backend plugin without CUDA, for the ordering test
// (stream_order_test.cpp): one "GPU" whose memory is host memory, copies and memsets run at
// once, streams, events and NCCL calls (a one-rank NCCL) do their size-1 work, the few kernels
// of the optimizer step run as host loops, and each call appends a line to a log. The log shows the order in which cmoe's host code queues work on streams and
// events, which is what the real runtime executes in.
//
// Entries the scenario does not use abort when called. The log is read through
// cmoe_recording_plugin_log(), exported beside the table.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include "core/cuda/cuda_api.h"

namespace {

std::mutex g_mu;
std::vector<std::string> g_log;
int g_next_handle = 1;

void log_line(const std::string& s) {
  std::lock_guard<std::mutex> lock(g_mu);
  g_log.push_back(s);
}

std::string name(const void* h, char kind) {
  return h == nullptr ? std::string("legacy") : std::string(1, kind) + std::to_string(reinterpret_cast<uintptr_t>(h));
}

template <typename T>
T new_handle() {
  std::lock_guard<std::mutex> lock(g_mu);
  return reinterpret_cast<T>(static_cast<uintptr_t>(g_next_handle++));
}

[[noreturn]] void unreachable() {
  std::fputs("recording CUDA plugin: an entry the scenario does not use was called\n", stderr);
  std::abort();
}

const char* last_error() { return ""; }
int32_t device_count(int32_t* n) { *n = 1; return CMOE_CUDA_OK; }
int32_t get_device(int32_t* d) { *d = 0; return CMOE_CUDA_OK; }
int32_t set_device(int32_t d) { return d == 0 ? CMOE_CUDA_OK : CMOE_CUDA_INVALID_ARGUMENT; }
int32_t device_info(char* n, int32_t bytes, size_t* total, int32_t* major, int32_t* minor, int32_t) {
  std::snprintf(n, static_cast<size_t>(bytes), "recording GPU");
  *total = size_t{1} << 30, *major = 9, *minor = 0;
  return CMOE_CUDA_OK;
}
int32_t device_malloc(void** p, size_t bytes, int32_t) {
  *p = std::aligned_alloc(256, (bytes + 255) / 256 * 256);
  return *p ? CMOE_CUDA_OK : CMOE_CUDA_RESOURCE_EXHAUSTED;
}
int32_t device_free(void* p, int32_t) {
  std::free(p);
  log_line("device_free");
  return CMOE_CUDA_OK;
}
int32_t memcpy_sync(void* dst, const void* src, size_t bytes, int32_t kind) {
  std::memmove(dst, src, bytes);
  log_line("memcpy legacy kind " + std::to_string(kind));
  return CMOE_CUDA_OK;
}
int32_t memcpy_async(void* dst, const void* src, size_t bytes, int32_t kind, CmoeCudaStream s) {
  std::memmove(dst, src, bytes);
  log_line("memcpy " + name(s, 's') + " kind " + std::to_string(kind));
  return CMOE_CUDA_OK;
}
int32_t memset_async(void* dst, int32_t byte, size_t bytes, CmoeCudaStream s) {
  std::memset(dst, byte, bytes);
  log_line("memset " + name(s, 's'));
  return CMOE_CUDA_OK;
}
int32_t stream_create(CmoeCudaStream* s, int32_t non_blocking) {
  *s = new_handle<CmoeCudaStream>();
  log_line("stream_create " + name(*s, 's') + (non_blocking ? " non_blocking" : ""));
  return CMOE_CUDA_OK;
}
int32_t stream_destroy(CmoeCudaStream) { return CMOE_CUDA_OK; }
int32_t stream_synchronize(CmoeCudaStream s) {
  log_line("stream_synchronize " + name(s, 's'));
  return CMOE_CUDA_OK;
}
int32_t stream_wait_event(CmoeCudaStream s, CmoeCudaEvent e) {
  log_line("stream_wait_event " + name(s, 's') + " " + name(e, 'e'));
  return CMOE_CUDA_OK;
}
int32_t event_create(CmoeCudaEvent* e) {
  *e = new_handle<CmoeCudaEvent>();
  return CMOE_CUDA_OK;
}
int32_t event_destroy(CmoeCudaEvent) { return CMOE_CUDA_OK; }
int32_t event_record(CmoeCudaEvent e, CmoeCudaStream s) {
  log_line("event_record " + name(e, 'e') + " " + name(s, 's'));
  return CMOE_CUDA_OK;
}
int32_t event_query(CmoeCudaEvent e) {
  log_line("event_query " + name(e, 'e'));
  return CMOE_CUDA_OK;  // everything queued has "finished": work runs at once here
}

// Host versions of the few kernels the optimizer-step scenario runs (the gradient reducer's
// averaging, AdamW and the squared norms), with the plugin's contracts (core/cuda/cuda_api.h).
int32_t scale_f32(float* out, const float* x, float s, int64_t n, CmoeCudaStream st) {
  for (int64_t i = 0; i < n; ++i) out[i] = s * x[i];
  log_line("scale_f32 " + name(st, 's'));
  return CMOE_CUDA_OK;
}
int32_t add_f32(float* out, const float* a, const float* b, int64_t n, CmoeCudaStream st) {
  for (int64_t i = 0; i < n; ++i) out[i] = a[i] + b[i];
  log_line("add_f32 " + name(st, 's'));
  return CMOE_CUDA_OK;
}
int32_t adamw_multi_f32(float* const* p, float* const* m, float* const* v, const float* const* g, const float* decay,
                        const int64_t* ct, const int64_t* cs, const int64_t* cl, int64_t chunks, float b1, float b2,
                        float eps, float step, float isb2, float gs, CmoeCudaStream st) {
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t t = ct[c];
    for (int64_t i = cs[c]; i < cs[c] + cl[c]; ++i) {
      const float gi = g[t][i] * gs;
      const float mi = b1 * m[t][i] + (1.0f - b1) * gi;
      const float vi = b2 * v[t][i] + (1.0f - b2) * gi * gi;
      m[t][i] = mi;
      v[t][i] = vi;
      p[t][i] = p[t][i] * decay[t] - step * mi / (std::sqrt(vi) * isb2 + eps);
    }
  }
  log_line("adamw_multi_f32 " + name(st, 's') + " chunks " + std::to_string(chunks));
  return CMOE_CUDA_OK;
}
int32_t sum_squares_multi_f32(double* sums, const float* const* x, const int64_t* ct, const int64_t* cs,
                              const int64_t* cl, int64_t chunks, CmoeCudaStream st) {
  for (int64_t c = 0; c < chunks; ++c) {
    double acc = 0;
    for (int64_t i = cs[c]; i < cs[c] + cl[c]; ++i) acc += static_cast<double>(x[ct[c]][i]) * x[ct[c]][i];
    sums[c] = acc;
  }
  log_line("sum_squares_multi_f32 " + name(st, 's'));
  return CMOE_CUDA_OK;
}

const char* nccl_error_string(int32_t) { return "recording NCCL"; }
const char* nccl_last_error(CmoeNcclComm) { return ""; }
int32_t nccl_get_unique_id(uint8_t* id) {
  std::memset(id, 7, CMOE_NCCL_UNIQUE_ID_BYTES);
  return CMOE_NCCL_SUCCESS;
}
int32_t nccl_comm_init_rank(CmoeNcclComm* c, const uint8_t*, int32_t nranks, int32_t, int32_t) {
  if (nranks != 1) return 5;  // ncclInvalidUsage: this fake is one rank
  *c = new_handle<CmoeNcclComm>();
  log_line("nccl_comm_init_rank");
  return CMOE_NCCL_SUCCESS;
}
int32_t nccl_comm_finalize(CmoeNcclComm) { return CMOE_NCCL_SUCCESS; }
int32_t nccl_comm_destroy(CmoeNcclComm) { return CMOE_NCCL_SUCCESS; }
int32_t nccl_comm_abort(CmoeNcclComm) { return CMOE_NCCL_SUCCESS; }
int32_t nccl_comm_get_async_error(int32_t* e, CmoeNcclComm) { *e = CMOE_NCCL_SUCCESS; return CMOE_NCCL_SUCCESS; }
int32_t nccl_group_start() { log_line("nccl_group_start"); return CMOE_NCCL_SUCCESS; }
int32_t nccl_group_end() { log_line("nccl_group_end"); return CMOE_NCCL_SUCCESS; }
int32_t nccl_all_reduce(void* recv, const void* send, size_t count, int32_t dtype, int32_t, CmoeNcclComm,
                        CmoeCudaStream s) {
  const size_t es = dtype == CMOE_CUDA_BF16 ? 2 : (dtype == CMOE_CUDA_I64 ? 8 : 4);
  if (recv != send) std::memmove(recv, send, count * es);
  log_line("nccl_all_reduce " + name(s, 's'));
  return CMOE_NCCL_SUCCESS;
}
int32_t nccl_send(const void*, size_t, int32_t, CmoeNcclComm, CmoeCudaStream s) {
  log_line("nccl_send " + name(s, 's'));
  return CMOE_NCCL_SUCCESS;
}
int32_t nccl_recv(void*, size_t, int32_t, CmoeNcclComm, CmoeCudaStream s) {
  log_line("nccl_recv " + name(s, 's'));
  return CMOE_NCCL_SUCCESS;
}

CmoeCudaApi make_table() {
  CmoeCudaApi api{};
  api.abi_version = CMOE_CUDA_ABI_VERSION;
  api.struct_size = sizeof(CmoeCudaApi);
  api.signature = cmoe_cuda_api_signature();
  api.has_nccl = 1;
#define REC_FILL_(ret, nm, params) api.nm = reinterpret_cast<ret(*) params>(&unreachable);
  CMOE_CUDA_API_ENTRIES(REC_FILL_)
#undef REC_FILL_
#define REC_SET_(nm) api.nm = &nm;
  REC_SET_(last_error) REC_SET_(device_count) REC_SET_(get_device) REC_SET_(set_device) REC_SET_(device_info)
  REC_SET_(device_malloc) REC_SET_(device_free) REC_SET_(memcpy_sync) REC_SET_(memcpy_async)
  REC_SET_(memset_async) REC_SET_(stream_create) REC_SET_(stream_destroy) REC_SET_(stream_synchronize)
  REC_SET_(stream_wait_event) REC_SET_(event_create) REC_SET_(event_destroy) REC_SET_(event_record)
  REC_SET_(event_query) REC_SET_(nccl_error_string) REC_SET_(nccl_last_error) REC_SET_(nccl_get_unique_id)
  REC_SET_(nccl_comm_init_rank) REC_SET_(nccl_comm_finalize) REC_SET_(nccl_comm_destroy) REC_SET_(nccl_comm_abort)
  REC_SET_(nccl_comm_get_async_error) REC_SET_(nccl_group_start) REC_SET_(nccl_group_end)
  REC_SET_(nccl_all_reduce) REC_SET_(nccl_send) REC_SET_(nccl_recv) REC_SET_(scale_f32) REC_SET_(add_f32)
  REC_SET_(adamw_multi_f32) REC_SET_(sum_squares_multi_f32)
#undef REC_SET_
  return api;
}

}  // namespace

extern "C" __attribute__((visibility("default"))) const CmoeCudaApi* cmoe_cuda_plugin_api() {
  static const CmoeCudaApi api = make_table();
  return &api;
}

// The log so far, one entry per line; `clear` empties it after reading.
extern "C" __attribute__((visibility("default"))) const char* cmoe_recording_plugin_log(int clear) {
  static thread_local std::string out;
  std::lock_guard<std::mutex> lock(g_mu);
  out.clear();
  for (const std::string& l : g_log) out += l + "\n";
  if (clear) g_log.clear();
  return out.c_str();
}
