// rng.cpp — Philox-4x32-10 and the distributions built on it.
#include "core/rng.h"

#include <cmath>

namespace cmoe {

namespace {
constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;
constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;

inline void mulhilo(uint32_t a, uint32_t b, uint32_t& hi, uint32_t& lo) {
  uint64_t p = static_cast<uint64_t>(a) * b;
  hi = static_cast<uint32_t>(p >> 32);
  lo = static_cast<uint32_t>(p);
}
}  // namespace

std::array<uint32_t, 4> philox4x32(std::array<uint32_t, 4> c, std::array<uint32_t, 2> k) {
  for (int round = 0; round < 10; ++round) {
    uint32_t hi0, lo0, hi1, lo1;
    mulhilo(kM0, c[0], hi0, lo0);
    mulhilo(kM1, c[2], hi1, lo1);
    c = {hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0};
    k[0] += kW0;
    k[1] += kW1;
  }
  return c;
}

namespace {
inline std::array<uint32_t, 4> block(uint64_t seed, uint64_t stream, uint64_t blk) {
  return philox4x32({static_cast<uint32_t>(blk), static_cast<uint32_t>(blk >> 32),
                     static_cast<uint32_t>(stream), static_cast<uint32_t>(stream >> 32)},
                    {static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32)});
}
inline double u32_to_open01(uint32_t x) { return ((x >> 8) + 0.5) * (1.0 / 16777216.0); }
}  // namespace

uint32_t rng_u32(uint64_t seed, uint64_t stream, uint64_t offset) {
  return block(seed, stream, offset / 4)[offset % 4];
}

float rng_uniform(uint64_t seed, uint64_t stream, uint64_t offset) {
  return static_cast<float>(u32_to_open01(rng_u32(seed, stream, offset)));
}

float rng_normal(uint64_t seed, uint64_t stream, uint64_t offset) {
  auto b = block(seed, stream, offset / 4);
  int j = static_cast<int>(offset % 4);
  int p = j / 2;
  double u1 = u32_to_open01(b[2 * p]), u2 = u32_to_open01(b[2 * p + 1]);
  double r = std::sqrt(-2.0 * std::log(u1));
  double theta = 6.283185307179586 * u2;
  return static_cast<float>((j % 2 == 0) ? r * std::cos(theta) : r * std::sin(theta));
}

void rng_fill_normal(Tensor& out, float mean, float std, uint64_t seed, uint64_t stream,
                     uint64_t first_offset) {
  CMOE_CHECK(out.dtype() == DType::kF32 && out.device().is_cpu(), "rng_fill_normal on ", out.str());
  float* p = out.data<float>();
  const int64_t n = out.numel();
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    p[i] = mean + std * rng_normal(seed, stream, first_offset + static_cast<uint64_t>(i));
  }
}

void rng_fill_uniform(Tensor& out, float lo, float hi, uint64_t seed, uint64_t stream,
                      uint64_t first_offset) {
  CMOE_CHECK(out.dtype() == DType::kF32 && out.device().is_cpu(), "rng_fill_uniform on ", out.str());
  float* p = out.data<float>();
  const int64_t n = out.numel();
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    p[i] = lo + (hi - lo) * rng_uniform(seed, stream, first_offset + static_cast<uint64_t>(i));
  }
}

uint64_t rng_stream_id(std::string_view name) {
  // FNV-1a 64: stable across platforms and releases (checkpoints record stream ids).
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char ch : name) {
    h ^= ch;
    h *= 0x100000001b3ull;
  }
  return h;
}

}  // namespace cmoe
