// cuda_backend.cpp — GPU discovery, and the hooks init() installs into core/allocator.h: a
// CachingAllocator over cudaMalloc/cudaFree, and synchronous cross-device copies.
#include "core/cuda/cuda_backend.h"

#include <cuda_runtime_api.h>
#include <dlfcn.h>

#include <mutex>

#include "absl/strings/str_cat.h"
#include "core/allocator.h"
#include "core/cuda/caching_allocator.h"
#include "core/cuda/cuda_check.h"

namespace cmoe::cuda {

namespace {

// Makes `device` current for a scope and restores the previous device after it, so allocator
// and copy hooks never change the caller's current device.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    CUDA_CHECK_FATAL(cudaGetDevice(&prev_));
    if (prev_ != device) CUDA_CHECK_FATAL(cudaSetDevice(device));
    switched_ = prev_ != device;
  }
  ~DeviceGuard() {
    if (switched_) CUDA_CHECK_FATAL(cudaSetDevice(prev_));
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int prev_ = 0;
  bool switched_ = false;
};

void* cuda_raw_alloc(void* /*ctx*/, size_t bytes, int device) {
  DeviceGuard guard(device);
  void* p = nullptr;
  const cudaError_t err = cudaMalloc(&p, bytes);
  if (err == cudaErrorMemoryAllocation) {
    (void)cudaGetLastError();  // out of memory is not sticky: let the caller retry
    return nullptr;
  }
  CMOE_CUDA_FATAL_IMPL_(cuda_status(err, "cudaMalloc", __FILE__, __LINE__));
  return p;
}

void cuda_raw_free(void* /*ctx*/, void* ptr, size_t /*bytes*/, int device) {
  DeviceGuard guard(device);
  CUDA_CHECK_FATAL(cudaFree(ptr));
}

void cuda_copy(void* dst, Device dst_device, const void* src, Device src_device, size_t bytes) {
  if (dst_device.is_cuda() && src_device.is_cuda()) {
    if (dst_device.index == src_device.index) {
      CUDA_CHECK_FATAL(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToDevice));
    } else {
      CUDA_CHECK_FATAL(cudaMemcpyPeer(dst, dst_device.index, src, src_device.index, bytes));
    }
  } else if (dst_device.is_cuda()) {
    CUDA_CHECK_FATAL(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
  } else {
    CUDA_CHECK_FATAL(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost));
  }
}

std::once_flag g_register_once;
// Deliberately never destroyed: tensors may outlive static destruction, and cudaFree after the
// runtime has unloaded fails.
CachingAllocator* g_allocator = nullptr;

// True when the NVIDIA driver library can be loaded; the runtime reports a missing driver as
// "driver version is insufficient", which misleads on a machine that has none at all.
bool driver_present() {
  void* lib = dlopen("libcuda.so.1", RTLD_LAZY | RTLD_LOCAL);
  if (lib != nullptr) dlclose(lib);
  return lib != nullptr;
}

}  // namespace

absl::StatusOr<int> device_count() {
  int n = 0;
  absl::Status st = CUDA_CHECK(cudaGetDeviceCount(&n));
  if (!st.ok()) {
    if (st.code() == absl::StatusCode::kUnavailable && !driver_present()) {
      return absl::UnavailableError(
          absl::StrCat("no NVIDIA driver (libcuda.so.1 not found); ", st.message()));
    }
    return st;
  }
  if (n == 0) return absl::UnavailableError("cudaGetDeviceCount reports 0 devices");
  return n;
}

absl::Status init(int device) {
  CMOE_ASSIGN_OR_RETURN(const int n, device_count());
  if (device < 0 || device >= n) {
    return absl::InvalidArgumentError(absl::StrCat(
        "CUDA device ", device, " requested but ", n,
        " visible (device indices start at 0; check CUDA_VISIBLE_DEVICES)"));
  }
  CMOE_RETURN_IF_ERROR(CUDA_CHECK(cudaSetDevice(device)));
  std::call_once(g_register_once, [] {
    g_allocator = new CachingAllocator(
        RawBackend{.alloc = cuda_raw_alloc, .free = cuda_raw_free, .ctx = nullptr,
                   .name = "cudaMalloc"});
    register_allocator(DeviceType::kCUDA, g_allocator);
    register_device_copy(cuda_copy);
  });
  return absl::OkStatus();
}

CachingAllocator& caching_allocator() {
  CMOE_CHECK(g_allocator != nullptr, "cuda::caching_allocator() before a successful cuda::init()");
  return *g_allocator;
}

}  // namespace cmoe::cuda
