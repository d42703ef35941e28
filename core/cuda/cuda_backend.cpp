// cuda_backend.cpp — GPU discovery through the plugin, and the hooks init() installs into
// core/allocator.h: a CachingAllocator over the plugin's device_malloc/device_free, and
// synchronous cross-device copies.
#include "core/cuda/cuda_backend.h"

#include <mutex>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/allocator.h"
#include "core/check.h"
#include "core/cuda/caching_allocator.h"
#include "core/cuda/plugin_loader.h"
#include "core/cuda/stream.h"

namespace cmoe::cuda {

namespace {

void* cuda_raw_alloc(void* /*ctx*/, size_t bytes, int device) {
  const CmoeCudaApi& api = loaded_api();
  void* p = nullptr;
  const int32_t code = api.device_malloc(&p, bytes, device);
  if (code == CMOE_CUDA_RESOURCE_EXHAUSTED) return nullptr;  // the caching allocator retries
  plugin_check(api, code, "raw CUDA allocation");
  return p;
}

void cuda_raw_free(void* /*ctx*/, void* ptr, size_t /*bytes*/, int device) {
  const CmoeCudaApi& api = loaded_api();
  plugin_check(api, api.device_free(ptr, device), "raw CUDA free");
}

void cuda_copy(void* dst, Device dst_device, const void* src, Device src_device, size_t bytes) {
  const CmoeCudaApi& api = loaded_api();
  int32_t code = CMOE_CUDA_OK;
  if (dst_device.is_cuda() && src_device.is_cuda()) {
    code = dst_device.index == src_device.index
               ? api.memcpy_sync(dst, src, bytes, CMOE_CUDA_D2D)
               : api.memcpy_peer(dst, dst_device.index, src, src_device.index, bytes);
  } else {
    code = api.memcpy_sync(dst, src, bytes, dst_device.is_cuda() ? CMOE_CUDA_H2D : CMOE_CUDA_D2H);
  }
  if (code != CMOE_CUDA_OK) {
    plugin_check(
        api, code,
        absl::StrCat("copy of ", bytes, " bytes from ", src_device.str(), " to ", dst_device.str())
            .c_str());
  }
}

// Device memsets on the compute stream (the legacy default stream, core/cuda/context.h).
void cuda_memset(void* dst, Device device, int byte, size_t bytes) {
  const CmoeCudaApi& api = loaded_api();
  int32_t now = -1;
  plugin_check(api, api.get_device(&now), "cudaGetDevice");
  if (now != device.index) plugin_check(api, api.set_device(device.index), "cudaSetDevice");
  plugin_check(api, api.memset_async(dst, byte, bytes, kLegacyStream),
               absl::StrCat("memset of ", bytes, " bytes on ", device.str()).c_str());
}

std::once_flag g_register_once;
// Deliberately never destroyed: tensors may outlive static destruction, and freeing device
// memory after the CUDA runtime has unloaded fails.
CachingAllocator* g_allocator = nullptr;

}  // namespace

absl::StatusOr<int> device_count() {
  CMOE_ASSIGN_OR_RETURN(const CmoeCudaApi* api, plugin_api());
  int32_t n = 0;
  CMOE_RETURN_IF_ERROR(plugin_status(*api, api->device_count(&n)));
  return static_cast<int>(n);
}

absl::Status register_backend() {
  CMOE_ASSIGN_OR_RETURN(const int n, device_count());
  (void)n;
  std::call_once(g_register_once, [] {
    g_allocator = new CachingAllocator(RawBackend{
        .alloc = cuda_raw_alloc, .free = cuda_raw_free, .ctx = nullptr, .name = "cudaMalloc"});
    register_allocator(DeviceType::kCUDA, g_allocator);
    register_device_copy(cuda_copy);
    register_device_memset(cuda_memset);
  });
  return absl::OkStatus();
}

absl::Status init(int device) {
  CMOE_ASSIGN_OR_RETURN(const int n, device_count());
  if (device < 0 || device >= n) {
    return absl::InvalidArgumentError(
        absl::StrCat("CUDA device ", device, " requested but ", n,
                     " visible (device indices start at 0; check CUDA_VISIBLE_DEVICES)"));
  }
  const CmoeCudaApi& api = loaded_api();
  CMOE_RETURN_IF_ERROR(plugin_status(api, api.set_device(device)));
  return register_backend();
}

CachingAllocator& caching_allocator() {
  CMOE_CHECK(g_allocator != nullptr, "cuda::caching_allocator() before a successful cuda::init()");
  return *g_allocator;
}

std::string describe_backend() {
  absl::StatusOr<const CmoeCudaApi*> api = plugin_api();
  if (!api.ok()) {
    const std::string why(api.status().message());
    if (api.status().code() == absl::StatusCode::kUnimplemented) {
      return "not built (nvcc was not found at configure time)";
    }
    return absl::StrCat("not available (", why, ")");
  }
  absl::StatusOr<int> n = device_count();
  if (!n.ok()) return absl::StrCat("no GPU usable (", n.status().message(), ")");
  // One line per GPU after the count: index, name, compute capability, memory.
  std::string out = absl::StrCat(*n, " GPU(s) (backend ", plugin_path(), ")");
  const CmoeCudaApi& a = loaded_api();
  for (int d = 0; d < *n; ++d) {
    char name[256] = "";
    size_t bytes = 0;
    int32_t major = 0, minor = 0;
    const absl::Status st = plugin_status(a, a.device_info(name, sizeof(name), &bytes, &major, &minor, d));
    if (!st.ok()) {
      absl::StrAppend(&out, "\n  gpu ", d, ": ", st.message());
      continue;
    }
    absl::StrAppend(&out, "\n  gpu ", d, ": ", name, ", sm_", major, minor, ", ",
                    absl::StrFormat("%.1f", static_cast<double>(bytes) / (1ull << 30)), " GiB");
  }
  return out;
}

}  // namespace cmoe::cuda
