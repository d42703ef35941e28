// allocator.cpp — the allocator registry, the CPU allocator and cross-device copies.
#include "core/allocator.h"

#include <malloc.h>
#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/check.h"
#include "core/cuda/cuda_backend.h"

namespace cmoe {

std::string Device::str() const {
  return type == DeviceType::kCPU ? std::string("cpu") : absl::StrCat("cuda:", index);
}

namespace {

// Large blocks (>= 1 MiB) come from a cache of mmap'd blocks keyed by a size class: training
// frees and reallocates the same activation and gradient sizes every step, and glibc served
// them with fresh mmaps (above its 32 MiB ceiling for M_MMAP_THRESHOLD: the LM head's logits)
// or from a heap that fragmented and kept growing, so every step paid ~20k page faults and
// kernel zeroing (15-25% of a cpu-small step on 2 cores). A cached block is reused as it is; blocks
// of 2 MiB and more are 2 MiB aligned and advised as transparent huge pages. Small blocks stay
// with glibc, whose heap is kept (not trimmed) for the same reason. Under AddressSanitizer every
// block goes through malloc, so overflows of large blocks are still caught.
class CpuAllocator final : public Allocator {
 public:
  CpuAllocator() {
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
  }

  void* allocate(size_t bytes, Device) override {
    const size_t cls = size_class(bytes);
    void* p = cls != 0 ? take_cached(cls) : std::aligned_alloc(64, std::max<size_t>(64, (bytes + 63) / 64 * 64));
    CMOE_CHECK(p != nullptr, "CPU allocation of ", bytes, " bytes failed (", in_use_.load(),
               " bytes in use, ", cached_.load(), " bytes cached)");
    size_t now = in_use_.fetch_add(bytes) + bytes;
    size_t peak = peak_.load();
    while (now > peak && !peak_.compare_exchange_weak(peak, now)) {
    }
    return p;
  }
  void deallocate(void* ptr, size_t bytes, Device) override {
    const size_t cls = size_class(bytes);
    if (cls != 0) {
      give_back(ptr, cls);
    } else {
      std::free(ptr);
    }
    in_use_.fetch_sub(bytes);
  }
  size_t bytes_in_use() const override { return in_use_.load(); }
  size_t peak_bytes() const override { return peak_.load(); }
  void reset_peak() override { peak_.store(in_use_.load()); }

 private:
#if defined(__SANITIZE_ADDRESS__)
  static constexpr bool kCache = false;
#else
  static constexpr bool kCache = true;
#endif
  static constexpr size_t kMinCached = size_t{1} << 20;
  static constexpr size_t kHuge = size_t{2} << 20;
  // Idle cached bytes are kept up to the larger of this and the high-water mark of bytes in use
  // (so the cache at most doubles a run's footprint, whatever sizes it sees); a block freed
  // beyond that goes back to the system at once.
  static constexpr size_t kMinIdleCap = size_t{256} << 20;

  // The block size for a request: 0 (glibc) below 1 MiB; else rounded up to 1/8 of its power
  // of two (at most 12.5% slack) and to whole 2 MiB pages from 2 MiB up.
  static size_t size_class(size_t bytes) {
    if (!kCache || bytes < kMinCached) return 0;
    const size_t top = size_t{1} << (63 - __builtin_clzll(bytes));
    const size_t step = std::max<size_t>(top / 8, 64 << 10);
    size_t cls = (bytes + step - 1) / step * step;
    if (cls >= kHuge) cls = (cls + kHuge - 1) / kHuge * kHuge;
    return cls;
  }

  void* take_cached(size_t cls) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = idle_.find(cls);
      if (it != idle_.end() && !it->second.empty()) {
        void* p = it->second.back();
        it->second.pop_back();
        cached_.fetch_sub(cls);
        return p;
      }
    }
    void* p = map_block(cls);
    if (p == nullptr) {  // out of address space or memory: return the idle blocks and retry
      release_idle();
      p = map_block(cls);
    }
    return p;
  }

  void give_back(void* p, size_t cls) {
    std::lock_guard<std::mutex> lock(mu_);
    if (cached_.load() + cls > std::max(kMinIdleCap, peak_.load())) {
      munmap(p, cls);
      return;
    }
    idle_[cls].push_back(p);
    cached_.fetch_add(cls);
  }

  void release_idle() {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [cls, blocks] : idle_) {
      for (void* p : blocks) munmap(p, cls);
      cached_.fetch_sub(cls * blocks.size());
      blocks.clear();
    }
  }

  // A fresh block of `cls` bytes, 2 MiB aligned and advised as huge pages when it is that big.
  static void* map_block(size_t cls) {
    const size_t align = cls >= kHuge ? kHuge : 4096;
    const size_t len = cls + align - 4096;
    void* raw = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) return nullptr;
    const uintptr_t base = reinterpret_cast<uintptr_t>(raw);
    const uintptr_t start = (base + align - 1) / align * align;
    if (start > base) munmap(raw, start - base);
    const uintptr_t end = base + len, want = start + cls;
    if (end > want) munmap(reinterpret_cast<void*>(want), end - want);
    void* p = reinterpret_cast<void*>(start);
    if (cls >= kHuge) madvise(p, cls, MADV_HUGEPAGE);  // advisory: ignored where THP is off
    return p;
  }

  std::atomic<size_t> in_use_{0};
  std::atomic<size_t> peak_{0};
  std::atomic<size_t> cached_{0};
  std::mutex mu_;
  std::unordered_map<size_t, std::vector<void*>> idle_;
};

// Never destroyed: tensors with static storage may be freed after any other static.
CpuAllocator& cpu_allocator() {
  static CpuAllocator* a = new CpuAllocator();
  return *a;
}
// Atomic: the first CUDA tensor may register the CUDA backend from any thread. The CPU slot is
// filled on first use (cpu_allocator()).
std::atomic<Allocator*> g_allocators[2] = {nullptr, nullptr};
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
  if (a == nullptr && type == DeviceType::kCPU) {
    Allocator* expected = nullptr;
    g_allocators[0].compare_exchange_strong(expected, &cpu_allocator());
    a = g_allocators[0].load();
  }
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
  if (type == DeviceType::kCPU) return true;
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
