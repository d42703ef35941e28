// runtime.cpp — the plugin's CUDA runtime entries: devices, memory, copies, streams, events.
#include <cuda_runtime_api.h>
#include <dlfcn.h>

#include <cstdio>

#include "core/cuda/plugin/check.h"
#include "core/cuda/plugin/entries.h"

namespace cmoe::cuda_plugin {

namespace {

cudaEvent_t to_cuda(CmoeCudaEvent e) { return reinterpret_cast<cudaEvent_t>(e); }

// True when the NVIDIA driver library can be loaded; the runtime reports a missing driver as
// "driver version is insufficient", which misleads on a machine that has none at all.
bool driver_present() {
  void* lib = dlopen("libcuda.so.1", RTLD_LAZY | RTLD_LOCAL);
  if (lib != nullptr) dlclose(lib);
  return lib != nullptr;
}

cudaMemcpyKind memcpy_kind(int32_t kind) {
  switch (kind) {
    case CMOE_CUDA_H2D: return cudaMemcpyHostToDevice;
    case CMOE_CUDA_D2H: return cudaMemcpyDeviceToHost;
    case CMOE_CUDA_D2D: return cudaMemcpyDeviceToDevice;
    default: return cudaMemcpyDefault;
  }
}

// Makes `device` current for a scope and restores the previous device after it, so allocator
// calls never change the caller's current device. ok() is false (and the error recorded) when
// switching failed.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    code_ = cuda_fail(cudaGetDevice(&prev_), "cudaGetDevice", __FILE__, __LINE__);
    if (code_ == CMOE_CUDA_OK && prev_ != device) {
      code_ = cuda_fail(cudaSetDevice(device), "cudaSetDevice", __FILE__, __LINE__);
      switched_ = code_ == CMOE_CUDA_OK;
    }
  }
  ~DeviceGuard() {
    if (switched_) (void)cudaSetDevice(prev_);
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;
  int32_t code() const { return code_; }

 private:
  int32_t code_ = CMOE_CUDA_OK;
  int prev_ = 0;
  bool switched_ = false;
};

}  // namespace

int32_t api_device_count(int32_t* count) {
  *count = 0;
  int n = 0;
  const int32_t code = cuda_fail(cudaGetDeviceCount(&n), "cudaGetDeviceCount", __FILE__, __LINE__);
  if (code != CMOE_CUDA_OK) {
    if (code == CMOE_CUDA_UNAVAILABLE && !driver_present()) {
      char why[768];
      std::snprintf(why, sizeof(why), "%s", api_last_error());
      return set_error(code, "no NVIDIA driver (libcuda.so.1 not found); %s", why);
    }
    return code;
  }
  if (n == 0) return set_error(CMOE_CUDA_UNAVAILABLE, "cudaGetDeviceCount reports 0 devices");
  *count = n;
  return CMOE_CUDA_OK;
}

int32_t api_get_device(int32_t* device) {
  int d = 0;
  CUDA_TRY(cudaGetDevice(&d));
  *device = d;
  return CMOE_CUDA_OK;
}

int32_t api_set_device(int32_t device) {
  CUDA_TRY(cudaSetDevice(device));
  return CMOE_CUDA_OK;
}

int32_t api_device_info(char* name, int32_t name_bytes, size_t* total_bytes, int32_t* cc_major, int32_t* cc_minor,
                        int32_t device) {
  cudaDeviceProp prop{};
  CUDA_TRY(cudaGetDeviceProperties(&prop, device));
  if (name_bytes > 0) std::snprintf(name, static_cast<size_t>(name_bytes), "%s", prop.name);
  *total_bytes = prop.totalGlobalMem;
  *cc_major = prop.major;
  *cc_minor = prop.minor;
  return CMOE_CUDA_OK;
}

int32_t api_device_malloc(void** ptr, size_t bytes, int32_t device) {
  *ptr = nullptr;
  DeviceGuard guard(device);
  if (guard.code() != CMOE_CUDA_OK) return guard.code();
  CUDA_TRY(cudaMalloc(ptr, bytes));
  return CMOE_CUDA_OK;
}

int32_t api_device_free(void* ptr, int32_t device) {
  DeviceGuard guard(device);
  if (guard.code() != CMOE_CUDA_OK) return guard.code();
  CUDA_TRY(cudaFree(ptr));
  return CMOE_CUDA_OK;
}

int32_t api_memcpy_sync(void* dst, const void* src, size_t bytes, int32_t kind) {
  CUDA_TRY(cudaMemcpy(dst, src, bytes, memcpy_kind(kind)));
  return CMOE_CUDA_OK;
}

int32_t api_memcpy_peer(void* dst, int32_t dst_device, const void* src, int32_t src_device,
                        size_t bytes) {
  CUDA_TRY(cudaMemcpyPeer(dst, dst_device, src, src_device, bytes));
  return CMOE_CUDA_OK;
}

int32_t api_memcpy_async(void* dst, const void* src, size_t bytes, int32_t kind,
                         CmoeCudaStream stream) {
  CUDA_TRY(cudaMemcpyAsync(dst, src, bytes, memcpy_kind(kind), to_cuda(stream)));
  return CMOE_CUDA_OK;
}

int32_t api_memset_async(void* dst, int32_t byte, size_t bytes, CmoeCudaStream stream) {
  CUDA_TRY(cudaMemsetAsync(dst, byte, bytes, to_cuda(stream)));
  return CMOE_CUDA_OK;
}

int32_t api_stream_create(CmoeCudaStream* stream, int32_t non_blocking) {
  cudaStream_t s = nullptr;
  CUDA_TRY(cudaStreamCreateWithFlags(&s, non_blocking ? cudaStreamNonBlocking : cudaStreamDefault));
  *stream = reinterpret_cast<CmoeCudaStream>(s);
  return CMOE_CUDA_OK;
}

int32_t api_stream_destroy(CmoeCudaStream stream) {
  CUDA_TRY(cudaStreamDestroy(to_cuda(stream)));
  return CMOE_CUDA_OK;
}

int32_t api_stream_synchronize(CmoeCudaStream stream) {
  CUDA_TRY(cudaStreamSynchronize(to_cuda(stream)));
  return CMOE_CUDA_OK;
}

int32_t api_stream_wait_event(CmoeCudaStream stream, CmoeCudaEvent event) {
  CUDA_TRY(cudaStreamWaitEvent(to_cuda(stream), to_cuda(event), 0));
  return CMOE_CUDA_OK;
}

int32_t api_event_create(CmoeCudaEvent* event) {
  cudaEvent_t e = nullptr;
  CUDA_TRY(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
  *event = reinterpret_cast<CmoeCudaEvent>(e);
  return CMOE_CUDA_OK;
}

int32_t api_event_destroy(CmoeCudaEvent event) {
  CUDA_TRY(cudaEventDestroy(to_cuda(event)));
  return CMOE_CUDA_OK;
}

int32_t api_event_record(CmoeCudaEvent event, CmoeCudaStream stream) {
  CUDA_TRY(cudaEventRecord(to_cuda(event), to_cuda(stream)));
  return CMOE_CUDA_OK;
}

int32_t api_event_query(CmoeCudaEvent event) {
  const cudaError_t err = cudaEventQuery(to_cuda(event));
  if (err == cudaErrorNotReady) return CMOE_CUDA_NOT_READY;
  CUDA_TRY(err);
  return CMOE_CUDA_OK;
}

}  // namespace cmoe::cuda_plugin
