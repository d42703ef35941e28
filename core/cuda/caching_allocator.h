// caching_allocator.h — the pooling allocator behind CUDA tensors.
//
// cudaMalloc and cudaFree synchronise the device and cost tens of microseconds, and a training
// step allocates and frees the same activation sizes every iteration. CachingAllocator keeps
// freed blocks in per-(device, size class) free lists and hands them out again, so in steady
// state a step performs no cudaMalloc/cudaFree at all.
//
// Size classes: requests up to kLargeThreshold (1 MiB) round up to a multiple of kSmallRound
// (512 B); larger ones round up to a multiple of kLargeRound (2 MiB). A cached block is reused
// only for a request of exactly its class (no splitting), which keeps the bookkeeping a pair of
// maps and bounds waste at the rounding.
//
// The raw device calls sit behind RawBackend (two function pointers and a context), so the
// pooling logic is unit-tested on CPU with malloc/free and with a backend that fails on demand
// (tests/cuda/caching_allocator_test.cpp); cuda_backend.cpp plugs in cudaMalloc/cudaFree.
//
// Streams: blocks are not tagged with a stream. A block freed on the host may be handed out
// again at once; that is safe because all of cmoe's device work that touches tensor storage is
// ordered on one compute stream per device (and host<->device copies run on the legacy default
// stream, which blocking streams synchronise with). Work on any other stream must be
// synchronised before its tensors are dropped.
//
// Thread-safe: every public member takes one mutex.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/allocator.h"

namespace cmoe::cuda {

inline constexpr size_t kSmallRound = 512;
inline constexpr size_t kLargeThreshold = size_t{1} << 20;  // 1 MiB
inline constexpr size_t kLargeRound = size_t{2} << 20;      // 2 MiB

// The block size a request of `bytes` is served from (0 bytes gets the smallest class).
size_t caching_block_size(size_t bytes);

// Raw device memory. alloc returns nullptr when the device is out of memory (any other failure
// is the backend's to report fatally); free releases a block alloc returned, with its size.
struct RawBackend {
  void* (*alloc)(void* ctx, size_t bytes, int device) = nullptr;
  void (*free)(void* ctx, void* ptr, size_t bytes, int device) = nullptr;
  void* ctx = nullptr;
  const char* name = "raw";  // appears in the out-of-memory message ("cudaMalloc")
};

struct CachingAllocatorStats {
  size_t bytes_in_use = 0;    // block bytes handed out (rounded sizes)
  size_t peak_bytes = 0;      // high-water mark of bytes_in_use since the last reset_peak
  size_t bytes_reserved = 0;  // bytes held from the backend: in use + cached
  size_t bytes_cached = 0;    // bytes sitting in free lists
  int64_t raw_allocs = 0;     // backend alloc calls that succeeded
  int64_t raw_frees = 0;      // backend free calls
  int64_t cache_hits = 0;     // allocations served from a free list
  int64_t oom_retries = 0;    // backend failures answered by emptying the cache and retrying
};

class CachingAllocator final : public Allocator {
 public:
  explicit CachingAllocator(RawBackend backend);
  // Returns cached blocks to the backend; blocks still handed out are a caller bug (checked).
  ~CachingAllocator() override;
  CachingAllocator(const CachingAllocator&) = delete;
  CachingAllocator& operator=(const CachingAllocator&) = delete;

  // Serves `bytes` on device.index from the free list of its size class, or from the backend.
  // On backend failure: empties the cache, retries once, then aborts with a message naming the
  // request, the device and the in-use / reserved bytes.
  void* allocate(size_t bytes, Device device) override;
  // Puts the block back on its free list (no backend call). `bytes` is the size requested.
  void deallocate(void* ptr, size_t bytes, Device device) override;

  size_t bytes_in_use() const override;
  size_t peak_bytes() const override;
  void reset_peak() override;

  // Returns every cached (free) block to the backend; blocks in use are untouched.
  void empty_cache();
  CachingAllocatorStats stats() const;

 private:
  struct Block {
    size_t size;  // rounded
    int device;
  };
  using ClassKey = std::pair<int, size_t>;  // (device, block size)

  void* raw_alloc_locked(size_t size, int device);
  void empty_cache_locked();

  RawBackend backend_;
  mutable std::mutex mu_;
  std::map<ClassKey, std::vector<void*>> free_;  // cached blocks per size class
  std::unordered_map<void*, Block> live_;        // blocks handed out
  CachingAllocatorStats stats_;
};

}  // namespace cmoe::cuda
