// caching_allocator.cpp — size classes, free lists and statistics of CachingAllocator. No CUDA
// calls here: device memory comes from the RawBackend the allocator was built with.
#include "core/cuda/caching_allocator.h"

#include <algorithm>

#include "absl/strings/str_format.h"
#include "core/check.h"

namespace cmoe::cuda {

namespace {

size_t round_up(size_t x, size_t m) { return (x + m - 1) / m * m; }

std::string mib(size_t bytes) { return absl::StrFormat("%.1f MiB", bytes / 1048576.0); }

}  // namespace

size_t caching_block_size(size_t bytes) {
  if (bytes <= kLargeThreshold) return std::max(kSmallRound, round_up(bytes, kSmallRound));
  return round_up(bytes, kLargeRound);
}

CachingAllocator::CachingAllocator(RawBackend backend) : backend_(backend) {
  CMOE_CHECK(backend_.alloc != nullptr && backend_.free != nullptr,
             "CachingAllocator needs a raw alloc and free");
}

CachingAllocator::~CachingAllocator() {
  std::lock_guard<std::mutex> lock(mu_);
  CMOE_CHECK(live_.empty(), live_.size(), " block(s) (", stats_.bytes_in_use,
             " bytes) still in use when their caching allocator is destroyed");
  empty_cache_locked();
}

void* CachingAllocator::raw_alloc_locked(size_t size, int device) {
  void* p = backend_.alloc(backend_.ctx, size, device);
  if (p == nullptr && stats_.bytes_cached > 0) {
    // The device may be full of our own cached blocks of other classes: give them back.
    ++stats_.oom_retries;
    empty_cache_locked();
    p = backend_.alloc(backend_.ctx, size, device);
  }
  if (p != nullptr) {
    ++stats_.raw_allocs;
    stats_.bytes_reserved += size;
  }
  return p;
}

void* CachingAllocator::allocate(size_t bytes, Device device) {
  const size_t size = caching_block_size(bytes);
  std::lock_guard<std::mutex> lock(mu_);
  void* p = nullptr;
  auto it = free_.find(ClassKey{device.index, size});
  if (it != free_.end() && !it->second.empty()) {
    p = it->second.back();
    it->second.pop_back();
    stats_.bytes_cached -= size;
    ++stats_.cache_hits;
  } else {
    p = raw_alloc_locked(size, device.index);
    CMOE_CHECK(p != nullptr, "out of memory on ", device.str(), ": ", backend_.name, " of ", size,
               " bytes (", mib(size), ", requested ", bytes,
               ") failed after emptying the "
               "cache; in use ",
               stats_.bytes_in_use, " bytes (", mib(stats_.bytes_in_use), "), reserved ",
               stats_.bytes_reserved, " bytes (", mib(stats_.bytes_reserved), "), peak ",
               mib(stats_.peak_bytes),
               ". Hint: reduce the micro-batch size or "
               "sequence length, or enable activation checkpointing.");
  }
  live_.emplace(p, Block{size, device.index});
  stats_.bytes_in_use += size;
  stats_.peak_bytes = std::max(stats_.peak_bytes, stats_.bytes_in_use);
  return p;
}

void CachingAllocator::deallocate(void* ptr, size_t bytes, Device device) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = live_.find(ptr);
  CMOE_CHECK(it != live_.end(), "deallocate of ", absl::StrFormat("%p", ptr), " (", bytes,
             " bytes on ", device.str(),
             ") that this allocator did not hand out, or a double free");
  const Block b = it->second;
  CMOE_CHECK(b.device == device.index && b.size == caching_block_size(bytes), "deallocate of ",
             absl::StrFormat("%p", ptr), " as ", bytes, " bytes on ", device.str(),
             " but it was allocated as a ", b.size, "-byte block on cuda:", b.device);
  live_.erase(it);
  free_[ClassKey{b.device, b.size}].push_back(ptr);
  stats_.bytes_in_use -= b.size;
  stats_.bytes_cached += b.size;
}

void CachingAllocator::empty_cache_locked() {
  for (auto& [key, blocks] : free_) {
    for (void* p : blocks) {
      backend_.free(backend_.ctx, p, key.second, key.first);
      ++stats_.raw_frees;
      stats_.bytes_reserved -= key.second;
      stats_.bytes_cached -= key.second;
    }
  }
  free_.clear();
}

void CachingAllocator::empty_cache() {
  std::lock_guard<std::mutex> lock(mu_);
  empty_cache_locked();
}

size_t CachingAllocator::bytes_in_use() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_.bytes_in_use;
}

size_t CachingAllocator::peak_bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_.peak_bytes;
}

void CachingAllocator::reset_peak() {
  std::lock_guard<std::mutex> lock(mu_);
  stats_.peak_bytes = stats_.bytes_in_use;
}

CachingAllocatorStats CachingAllocator::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

}  // namespace cmoe::cuda
