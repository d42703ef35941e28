// caching_allocator_test.cpp — the pooling logic of cuda::CachingAllocator, run on the CPU.
//
// A fake RawBackend hands out malloc'd blocks, records every raw call and can be told to fail,
// so these tests need no GPU: they prove size-class rounding, reuse without raw calls, the
// statistics, per-device pools, the empty-cache-and-retry answer to out of memory, the fatal
// message when memory stays short, and thread safety. ASan (CMOE_SANITIZE) additionally checks
// that no block is used after it went back to the backend.
#include "core/cuda/caching_allocator.h"

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace cmoe::cuda {
namespace {

constexpr size_t kMiB = size_t{1} << 20;

// Raw memory from malloc; fails the next `fail_next` calls (or all, with fail_always).
struct FakeBackend {
  std::mutex mu;
  std::map<void*, std::pair<size_t, int>> live;  // ptr -> (bytes, device)
  int64_t allocs = 0;
  int64_t frees = 0;
  int fail_next = 0;
  bool fail_always = false;

  static void* alloc(void* ctx, size_t bytes, int device) {
    auto* self = static_cast<FakeBackend*>(ctx);
    std::lock_guard<std::mutex> lock(self->mu);
    if (self->fail_always) return nullptr;
    if (self->fail_next > 0) {
      --self->fail_next;
      return nullptr;
    }
    void* p = std::malloc(bytes);
    self->live[p] = {bytes, device};
    ++self->allocs;
    return p;
  }
  static void free(void* ctx, void* ptr, size_t bytes, int device) {
    auto* self = static_cast<FakeBackend*>(ctx);
    std::lock_guard<std::mutex> lock(self->mu);
    auto it = self->live.find(ptr);
    ASSERT_NE(it, self->live.end()) << "raw free of a pointer the backend did not allocate";
    EXPECT_EQ(it->second.first, bytes);
    EXPECT_EQ(it->second.second, device);
    self->live.erase(it);
    ++self->frees;
    std::free(ptr);
  }
  RawBackend raw() { return RawBackend{&FakeBackend::alloc, &FakeBackend::free, this, "fake"}; }
};

TEST(CachingAllocator, SizeClasses) {
  EXPECT_EQ(caching_block_size(0), 512u);
  EXPECT_EQ(caching_block_size(1), 512u);
  EXPECT_EQ(caching_block_size(512), 512u);
  EXPECT_EQ(caching_block_size(513), 1024u);
  EXPECT_EQ(caching_block_size(1000), 1024u);
  EXPECT_EQ(caching_block_size(kMiB - 1), kMiB);
  EXPECT_EQ(caching_block_size(kMiB), kMiB);          // 1 MiB itself is still a small class
  EXPECT_EQ(caching_block_size(kMiB + 1), 2 * kMiB);  // above it: multiples of 2 MiB
  EXPECT_EQ(caching_block_size(2 * kMiB), 2 * kMiB);
  EXPECT_EQ(caching_block_size(2 * kMiB + 1), 4 * kMiB);
  EXPECT_EQ(caching_block_size(5 * kMiB), 6 * kMiB);
}

TEST(CachingAllocator, ReusesFreedBlocksWithoutRawCalls) {
  FakeBackend fake;
  {
    CachingAllocator a(fake.raw());
    void* p = a.allocate(1000, cuda_device(0));
    a.deallocate(p, 1000, cuda_device(0));
    // 700 bytes rounds to the same 1024-byte class: the same block comes back.
    EXPECT_EQ(a.allocate(700, cuda_device(0)), p);
    EXPECT_EQ(fake.allocs, 1);
    EXPECT_EQ(a.stats().cache_hits, 1);
    // A different class needs a new raw block.
    void* q = a.allocate(1500, cuda_device(0));
    EXPECT_NE(q, p);
    EXPECT_EQ(fake.allocs, 2);
    a.deallocate(p, 700, cuda_device(0));
    a.deallocate(q, 1500, cuda_device(0));

    // A training-step-like pattern: after the first step, no raw call at all.
    const size_t sizes[] = {4096, 4096, 100, 3 * kMiB, 512 * 1024, 4096, 7 * kMiB + 5};
    for (int step = 0; step < 50; ++step) {
      std::vector<std::pair<void*, size_t>> held;
      for (size_t s : sizes) held.emplace_back(a.allocate(s, cuda_device(0)), s);
      for (auto& [ptr, s] : held) a.deallocate(ptr, s, cuda_device(0));
      if (step == 0) {
        EXPECT_EQ(fake.allocs, 2 + 7);  // 4096 is held three times at once
      }
    }
    EXPECT_EQ(fake.allocs, 9);
    EXPECT_EQ(fake.frees, 0);
    EXPECT_EQ(a.stats().raw_allocs, 9);
    EXPECT_EQ(a.bytes_in_use(), 0u);
  }
  // Destruction returns every cached block to the backend.
  EXPECT_EQ(fake.frees, 9);
  EXPECT_TRUE(fake.live.empty());
}

TEST(CachingAllocator, StatsTrackInUsePeakAndReserved) {
  FakeBackend fake;
  CachingAllocator a(fake.raw());
  void* p = a.allocate(1000, cuda_device(0));         // 1024
  void* q = a.allocate(3 * kMiB, cuda_device(0));     // 4 MiB
  void* r = a.allocate(10, cuda_device(0));           // 512
  const size_t all = 1024 + 4 * kMiB + 512;
  EXPECT_EQ(a.bytes_in_use(), all);
  EXPECT_EQ(a.peak_bytes(), all);
  EXPECT_EQ(a.stats().bytes_reserved, all);
  a.deallocate(q, 3 * kMiB, cuda_device(0));
  EXPECT_EQ(a.bytes_in_use(), 1024u + 512u);
  EXPECT_EQ(a.peak_bytes(), all);  // the high-water mark stays
  EXPECT_EQ(a.stats().bytes_cached, 4 * kMiB);
  EXPECT_EQ(a.stats().bytes_reserved, all);
  a.reset_peak();
  EXPECT_EQ(a.peak_bytes(), 1024u + 512u);
  a.empty_cache();
  EXPECT_EQ(fake.frees, 1);
  EXPECT_EQ(a.stats().bytes_cached, 0u);
  EXPECT_EQ(a.stats().bytes_reserved, 1024u + 512u);
  a.deallocate(p, 1000, cuda_device(0));
  a.deallocate(r, 10, cuda_device(0));
  a.empty_cache();
  EXPECT_EQ(a.stats().bytes_reserved, 0u);
  EXPECT_EQ(a.stats().raw_frees, 3);
  EXPECT_TRUE(fake.live.empty());
}

TEST(CachingAllocator, DevicesHaveSeparatePools) {
  FakeBackend fake;
  CachingAllocator a(fake.raw());
  void* p = a.allocate(4096, cuda_device(0));
  a.deallocate(p, 4096, cuda_device(0));
  void* q = a.allocate(4096, cuda_device(1));  // a device-0 block must not serve device 1
  EXPECT_EQ(fake.allocs, 2);
  EXPECT_EQ(fake.live.at(q).second, 1);
  a.deallocate(q, 4096, cuda_device(1));
  EXPECT_EQ(a.allocate(4096, cuda_device(0)), p);
  a.deallocate(p, 4096, cuda_device(0));
}

TEST(CachingAllocator, OutOfMemoryEmptiesCacheAndRetriesOnce) {
  FakeBackend fake;
  CachingAllocator a(fake.raw());
  for (size_t s : {size_t{1000}, size_t{2000}, 3 * kMiB}) {
    a.deallocate(a.allocate(s, cuda_device(0)), s, cuda_device(0));
  }
  ASSERT_EQ(a.stats().bytes_cached, 1024u + 2048u + 4 * kMiB);
  fake.fail_next = 1;  // the device is "full" of our cached blocks
  void* p = a.allocate(5 * kMiB, cuda_device(0));
  ASSERT_NE(p, nullptr);
  CachingAllocatorStats s = a.stats();
  EXPECT_EQ(s.oom_retries, 1);
  EXPECT_EQ(fake.frees, 3);  // every cached block went back before the retry
  EXPECT_EQ(s.bytes_cached, 0u);
  EXPECT_EQ(s.bytes_reserved, 6 * kMiB);
  EXPECT_EQ(s.bytes_in_use, 6 * kMiB);
  a.deallocate(p, 5 * kMiB, cuda_device(0));
}

TEST(CachingAllocatorDeathTest, PersistentOutOfMemoryIsFatalWithUsage) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        FakeBackend fake;
        CachingAllocator a(fake.raw());
        void* held = a.allocate(1000, cuda_device(0));
        a.deallocate(a.allocate(2000, cuda_device(0)), 2000, cuda_device(0));
        fake.fail_always = true;
        a.allocate(3 * kMiB, cuda_device(0));
        a.deallocate(held, 1000, cuda_device(0));
      },
      "out of memory on cuda:0: fake of 4194304 bytes .*requested 3145728.* in use 1024 bytes"
      ".*reserved 1024 bytes");
}

TEST(CachingAllocatorDeathTest, DoubleFreeIsCaught) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        FakeBackend fake;
        CachingAllocator a(fake.raw());
        void* p = a.allocate(64, cuda_device(0));
        a.deallocate(p, 64, cuda_device(0));
        a.deallocate(p, 64, cuda_device(0));
      },
      "did not hand out, or a double free");
}

TEST(CachingAllocator, ConcurrentUseNeverSharesABlock) {
  FakeBackend fake;
  CachingAllocator a(fake.raw());
  constexpr int kThreads = 4;
  constexpr int kIters = 1500;
  std::vector<std::thread> threads;
  std::vector<int> errors(kThreads, 0);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      uint64_t state = 0x9e3779b97f4a7c15ull * (t + 1);  // per-thread LCG, fixed seed
      std::vector<std::pair<unsigned char*, size_t>> held;
      for (int i = 0; i < kIters; ++i) {
        state = state * 6364136223846793005ull + 1442695040888963407ull;
        const size_t bytes = 1 + (state >> 33) % 6000;
        auto* p = static_cast<unsigned char*>(a.allocate(bytes, cuda_device(0)));
        std::memset(p, t + 1, bytes);  // a block shared with another thread gets overwritten
        held.emplace_back(p, bytes);
        if (held.size() > 8 || (state >> 20) % 3 == 0) {
          auto [q, n] = held.front();
          held.erase(held.begin());
          for (size_t j = 0; j < n; ++j) errors[t] += q[j] != t + 1;
          a.deallocate(q, n, cuda_device(0));
        }
      }
      for (auto [q, n] : held) {
        for (size_t j = 0; j < n; ++j) errors[t] += q[j] != t + 1;
        a.deallocate(q, n, cuda_device(0));
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int t = 0; t < kThreads; ++t) EXPECT_EQ(errors[t], 0) << "thread " << t;
  CachingAllocatorStats s = a.stats();
  EXPECT_EQ(s.bytes_in_use, 0u);
  EXPECT_EQ(s.bytes_reserved, s.bytes_cached);
  EXPECT_EQ(s.raw_allocs + s.cache_hits, int64_t{kThreads} * kIters);
  EXPECT_EQ(static_cast<int64_t>(fake.live.size()), s.raw_allocs);
  EXPECT_LE(s.peak_bytes, s.bytes_reserved);
}

}  // namespace
}  // namespace cmoe::cuda
