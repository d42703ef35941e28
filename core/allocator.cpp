// allocator.cpp — the allocator registry, the CPU allocator and cross-device copies.
#include "core/allocator.h"

#include <malloc.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "core/check.h"
#include "core/cuda/cuda_backend.h"

namespace cmoe {

std::string Device::str() const {
  return type == DeviceType::kCPU ? std::string("cpu") : absl::StrCat("cuda:", index);
}

namespace {

class CpuAllocator final : public Allocator {
 public:
  CpuAllocator() {
    // Training frees and reallocates the same activation sizes every step. glibc would serve
    // blocks above 128 KiB with fresh mmaps and trim freed heap memory, so every step paid
    // page faults and kernel zeroing for all its activations (about 10% of a cpu-small
    // step). Keeping blocks up to the largest mmap threshold (32 MiB) in the heap, and not
    // trimming it, makes steady-state steps reuse warm memory.
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
  }

  void* allocate(size_t bytes, Device) override {
    size_t rounded = std::max<size_t>(64, (bytes + 63) / 64 * 64);
    void* p = std::aligned_alloc(64, rounded);
    CMOE_CHECK(p != nullptr, "CPU allocation of ", bytes, " bytes failed (", in_use_.load(),
               " bytes in use)");
    size_t now = in_use_.fetch_add(bytes) + bytes;
    size_t peak = peak_.load();
    while (now > peak && !peak_.compare_exchange_weak(peak, now)) {
    }
    return p;
  }
  void deallocate(void* ptr, size_t bytes, Device) override {
    std::free(ptr);
    in_use_.fetch_sub(bytes);
  }
  size_t bytes_in_use() const override { return in_use_.load(); }
  size_t peak_bytes() const override { return peak_.load(); }
  void reset_peak() override { peak_.store(in_use_.load()); }

 private:
  std::atomic<size_t> in_use_{0};
  std::atomic<size_t> peak_{0};
};

CpuAllocator g_cpu_allocator;
// Atomic: the first CUDA tensor may register the CUDA backend from any thread.
std::atomic<Allocator*> g_allocators[2] = {&g_cpu_allocator, nullptr};
std::atomic<DeviceCopyFn> g_device_copy = nullptr;
std::atomic<DeviceMemsetFn> g_device_memset = nullptr;

// The first CUDA tensor or copy loads the CUDA backend (core/cuda/cuda_backend.h) if nothing
// has yet; without one it aborts naming the reason (plugin missing, no driver, no GPU).
void require_cuda_backend(const char* what) {
  const absl::Status st = cuda::register_backend();
  CMOE_CHECK(st.ok(), what, " needs the CUDA backend, which is unavailable: ", st.message());
}

}  // namespace

Allocator& allocator_for(DeviceType type) {
  Allocator* a = g_allocators[static_cast<int>(type)].load();
  if (a == nullptr && type == DeviceType::kCUDA) {
    require_cuda_backend("a CUDA tensor");
    a = g_allocators[static_cast<int>(type)].load();
  }
  CMOE_CHECK(a != nullptr, "no allocator registered for ",
             type == DeviceType::kCPU ? "cpu" : "cuda");
  return *a;
}

void register_allocator(DeviceType type, Allocator* allocator) {
  g_allocators[static_cast<int>(type)].store(allocator);
}

bool has_allocator(DeviceType type) {
  return g_allocators[static_cast<int>(type)].load() != nullptr;
}

void register_device_copy(DeviceCopyFn fn) { g_device_copy.store(fn); }
void register_device_memset(DeviceMemsetFn fn) { g_device_memset.store(fn); }

void set_bytes(void* dst, Device device, int byte, size_t bytes) {
  if (bytes == 0) return;
  if (device.is_cpu()) {
    std::memset(dst, byte, bytes);
    return;
  }
  DeviceMemsetFn fn = g_device_memset.load();
  if (fn == nullptr) {
    require_cuda_backend(absl::StrCat("a memset on ", device.str()).c_str());
    fn = g_device_memset.load();
  }
  fn(dst, device, byte, bytes);
}

void copy_bytes(void* dst, Device dst_device, const void* src, Device src_device, size_t bytes) {
  if (bytes == 0) return;
  if (dst_device.is_cpu() && src_device.is_cpu()) {
    std::memcpy(dst, src, bytes);
    return;
  }
  DeviceCopyFn copy = g_device_copy.load();
  if (copy == nullptr) {
    require_cuda_backend(absl::StrCat("copy between ", src_device.str(), " and ", dst_device.str())
                             .c_str());
    copy = g_device_copy.load();
  }
  copy(dst, dst_device, src, src_device, bytes);
}

Storage::Storage(size_t bytes, Device device)
    : bytes_(bytes), device_(device), allocator_(&allocator_for(device.type)) {
  data_ = allocator_->allocate(bytes, device);
}

Storage::~Storage() { allocator_->deallocate(data_, bytes_, device_); }

}  // namespace cmoe
