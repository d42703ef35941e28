// tensor_test.cpp — Tensor views alias, copies do not; dtype conversions; RNG properties; the CPU
// allocator's block cache.
#include <sys/resource.h>

#include <cmath>
#include <cstring>
#include <cstdint>
#include <vector>

#include "core/allocator.h"
#include "core/cpu/kernels.h"
#include "core/rng.h"
#include "core/tensor.h"
#include "gtest/gtest.h"

namespace cmoe {
namespace {

TEST(Tensor, ViewsAliasAndClonesDoNot) {
  Tensor t = Tensor::zeros({4, 3}, DType::kF32);
  Tensor row = t[2];
  Tensor v = t.view({12});
  Tensor c = t.clone();
  row.data<float>()[1] = 5.0f;
  EXPECT_EQ(t.data<float>()[2 * 3 + 1], 5.0f);
  EXPECT_EQ(v.data<float>()[7], 5.0f);
  EXPECT_EQ(c.data<float>()[7], 0.0f);
  EXPECT_TRUE(row.same_storage(t));
  EXPECT_FALSE(c.same_storage(t));
  EXPECT_EQ(t.slice0(1, 3).shape(), (Shape{2, 3}));
  EXPECT_EQ(t.slice0(1, 3).data<float>(), t.data<float>() + 3);
}

TEST(Tensor, Bf16RoundTripAndRounding) {
  // Round to nearest even: 1 + 2^-8 is a tie between 1 and 1 + 2^-7 -> 1 (even mantissa).
  EXPECT_EQ(bf16_to_f32(f32_to_bf16(1.0f + 1.0f / 256)), 1.0f);
  EXPECT_EQ(bf16_to_f32(f32_to_bf16(1.0f + 3.0f / 256)), 1.0f + 4.0f / 256);
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(NAN))));
  // The vectorised conversion agrees with the scalar one bit for bit, tails included.
  Tensor x = Tensor::empty({1037}, DType::kF32);
  rng_fill_normal(x, 0, 3, 7, 1);
  x.data<float>()[5] = NAN;
  x.data<float>()[6] = INFINITY;
  Tensor b = x.to_dtype(DType::kBF16);
  for (int i = 0; i < 1037; ++i) {
    EXPECT_EQ(b.data<bf16>()[i].bits, f32_to_bf16(x.data<float>()[i]).bits) << i;
  }
  Tensor back = b.to_dtype(DType::kF32);
  for (int i = 0; i < 1037; ++i) {
    if (i == 5 || i == 6) continue;  // NaN, inf
    EXPECT_EQ(back.data<float>()[i], bf16_to_f32(b.data<bf16>()[i]));
    EXPECT_LE(std::abs(back.data<float>()[i] - x.data<float>()[i]), std::abs(x.data<float>()[i]) / 256);
  }
}

// Every class of f32 (normals, ties, denormals, zeros, infinities, quiet and signalling NaNs
// with payloads, values that round up to inf) converts to the scalar rule's bits, in blocks
// with and without a denormal (the AVX512-BF16 path takes blocks of 32 without one).
TEST(Tensor, Bf16VectorConversionMatchesScalarForEveryClass) {
  std::vector<uint32_t> bits;
  for (uint64_t u = 0; u <= 0xffffffffull; u += 65521) bits.push_back(static_cast<uint32_t>(u));
  for (uint32_t special : {0x00000000u, 0x80000000u, 0x00000001u, 0x807fffffu, 0x00800000u, 0x7f7fffffu,
                           0xff7fffffu, 0x7f800000u, 0xff800000u, 0x7fc00000u, 0x7f800001u, 0xffbfffffu,
                           0x3f808000u, 0x3f818000u, 0x3f80ffffu, 0x3f807fffu}) {
    bits.push_back(special);
  }
  // Then the same values with every denormal replaced by a normal: blocks free of denormals.
  const size_t first = bits.size();
  for (size_t i = 0; i < first; ++i) {
    const uint32_t u = bits[i];
    bits.push_back((u & 0x7f800000u) == 0 && (u & 0x007fffffu) != 0 ? (u | 0x3f800000u) : u);
  }
  Tensor x = Tensor::empty({static_cast<int64_t>(bits.size())}, DType::kF32);
  std::memcpy(x.raw_data(), bits.data(), bits.size() * sizeof(uint32_t));
  Tensor b = x.to_dtype(DType::kBF16);
  std::vector<bf16> serial(bits.size());
  cpu::f32_to_bf16_serial(serial.data(), x.data<float>(), x.numel());
  int64_t mismatches = 0;
  for (size_t i = 0; i < bits.size(); ++i) {
    const uint16_t want = f32_to_bf16(x.data<float>()[i]).bits;
    mismatches += b.data<bf16>()[i].bits != want || serial[i].bits != want;
    if (b.data<bf16>()[i].bits != want) ADD_FAILURE() << "f32 bits " << std::hex << bits[i];
    if (mismatches > 10) break;
  }
  EXPECT_EQ(mismatches, 0) << "AVX512-BF16 path: " << (cpu::has_avx512bf16() ? "yes" : "no");
}

TEST(Rng, PhiloxKnownAnswer) {
  // Random123's published known-answer vector for philox4x32-10 with all-zero inputs.
  auto r = philox4x32({0, 0, 0, 0}, {0, 0});
  EXPECT_EQ(r[0], 0x6627e8d5u);
  EXPECT_EQ(r[1], 0xe169c58du);
  EXPECT_EQ(r[2], 0xbc57ac4cu);
  EXPECT_EQ(r[3], 0x9b00dbd8u);
  auto s = philox4x32({0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}, {0xffffffffu, 0xffffffffu});
  EXPECT_EQ(s[0], 0x408f276du);
  EXPECT_EQ(s[1], 0x41c83b0eu);
  EXPECT_EQ(s[2], 0xa20bc7c6u);
  EXPECT_EQ(s[3], 0x6d5451fdu);
}

TEST(Rng, ValueDependsOnlyOnSeedStreamOffset) {
  // A slice filled from its global offset equals the same slice of the whole tensor: the
  // property that makes initialisation independent of which rank owns which shard.
  Tensor whole = Tensor::empty({64, 16}, DType::kF32);
  rng_fill_normal(whole, 0, 0.02f, 42, rng_stream_id("layers.0.w"));
  Tensor part = Tensor::empty({16, 16}, DType::kF32);
  rng_fill_normal(part, 0, 0.02f, 42, rng_stream_id("layers.0.w"), 32 * 16);
  for (int i = 0; i < 16 * 16; ++i) EXPECT_EQ(part.data<float>()[i], whole.data<float>()[32 * 16 + i]);
  EXPECT_NE(rng_u32(42, 1, 0), rng_u32(43, 1, 0));
  EXPECT_NE(rng_u32(42, 1, 0), rng_u32(42, 2, 0));
}

TEST(Rng, NormalMoments) {
  Tensor x = Tensor::empty({1 << 18}, DType::kF32);
  rng_fill_normal(x, 0, 1, 5, 9);
  double s = 0, s2 = 0, s4 = 0;
  for (float v : x.to_floats()) {
    s += v;
    s2 += double(v) * v;
    s4 += double(v) * v * v * v;
  }
  const double n = x.numel(), mean = s / n, var = s2 / n - mean * mean;
  EXPECT_NEAR(mean, 0, 0.01);    // 5 sigma for n = 2^18 is ~0.0098
  EXPECT_NEAR(var, 1, 0.015);
  EXPECT_NEAR(s4 / n, 3, 0.06);  // kurtosis of a normal
}

// The CPU allocator keeps freed blocks of 1 MiB and up for reuse: a training-like loop that
// frees and reallocates the same sizes touches no fresh pages after its first round (before,
// glibc's mmaps and heap growth cost ~20k page faults per cpu-small step), blocks of 2 MiB and
// up are 2 MiB aligned, contents are the caller's, and the byte counts return to where they were.
TEST(CpuAllocator, ReusesLargeBlocksWithoutPageFaults) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "AddressSanitizer build: every block goes through malloc so ASan can check it (no cache to test)";
#endif
  Allocator& alloc = allocator_for(DeviceType::kCPU);
  const size_t before = alloc.bytes_in_use();
  const std::vector<int64_t> sizes = {300000, 2100000, 16 << 20 >> 2, 9000000, 262144, 33 << 20 >> 2};  // floats
  auto faults = [] {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_minflt;
  };
  auto round_trip = [&] {
    std::vector<Tensor> live;
    for (int64_t n : sizes) {
      live.push_back(Tensor::empty({n}, DType::kF32));
      float* p = live.back().data<float>();
      for (int64_t i = 0; i < n; i += 1024) p[i] = static_cast<float>(i);  // touch every page
      if (live.back().nbytes() >= (size_t{2} << 20)) {
        EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % (uintptr_t{2} << 20), 0u) << n << " floats";
      }
    }
    for (size_t t = 0; t < live.size(); ++t) {
      const float* p = live[t].data<float>();
      for (int64_t i = 0; i < sizes[t]; i += 1024) ASSERT_EQ(p[i], static_cast<float>(i));
    }
  };
  round_trip();  // maps the blocks
  const long f0 = faults();
  for (int rep = 0; rep < 5; ++rep) round_trip();
  // The small (glibc) block of 262144 floats is under the cache's 1 MiB floor but stays in
  // glibc's untrimmed heap; allow a few faults for the test's own bookkeeping.
  EXPECT_LT(faults() - f0, 64) << "steady-state rounds touched fresh pages";
  EXPECT_EQ(alloc.bytes_in_use(), before);
}

}  // namespace
}  // namespace cmoe
