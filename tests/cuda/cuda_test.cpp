// cuda_test.cpp — the CUDA backend, loaded through its plugin (libcmoe_cuda.so), against the
// CPU: allocator and copies, bf16 conversion (bit for bit), add (exact), cuBLAS matmul (within
// f32-accumulation tolerance).
//
// On a machine without a usable GPU every GPU test skips with the driver's reason printed
// ("skipped: no GPU (...)"); loading the plugin, discovery and the plugin's error sentences are
// tested everywhere (this binary is built only where nvcc built the plugin, whose CUDA
// libraries are then present).
#include <cmath>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "core/cuda/blas.h"
#include "core/cuda/caching_allocator.h"
#include "core/cuda/cuda_backend.h"
#include "core/cuda/ops.h"
#include "core/cuda/plugin_loader.h"
#include "core/cuda/stream.h"
#include "core/rng.h"
#include "core/tensor.h"
#include "gtest/gtest.h"

namespace cmoe {
namespace {

// Skips the calling test, saying why, when no GPU is usable; otherwise initialises device 0.
#define CMOE_REQUIRE_GPU()                                                             \
  do {                                                                                 \
    const absl::StatusOr<int> gpus_ = cuda::device_count();                            \
    if (!gpus_.ok()) {                                                                 \
      GTEST_SKIP() << "skipped: no GPU (" << std::string(gpus_.status().message()) << ")"; \
    }                                                                                  \
    const absl::Status init_ = cuda::init(0);                                          \
    ASSERT_TRUE(init_.ok()) << init_.message();                                        \
  } while (0)

uint32_t f32_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

float bits_f32(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

Tensor random_f32(const Shape& shape, uint64_t stream) {
  Tensor t = Tensor::empty(shape, DType::kF32);
  rng_fill_normal(t, 0.0f, 1.0f, 1234, stream);
  return t;
}

// ---- everywhere -------------------------------------------------------------------------

TEST(CudaBackend, PluginLoadsAndIsSelfDescribing) {
  absl::StatusOr<const CmoeCudaApi*> api = cuda::plugin_api();
  ASSERT_TRUE(api.ok()) << api.status();
  EXPECT_EQ((*api)->abi_version, CMOE_CUDA_ABI_VERSION);
  EXPECT_EQ((*api)->signature, cmoe_cuda_api_signature());
  const std::string line = cuda::describe_backend();
  std::printf("cuda: %s\n", line.c_str());
  EXPECT_TRUE(line.find("GPU(s) (backend ") != std::string::npos ||
              line.rfind("no GPU usable (", 0) == 0)
      << line;
}

TEST(CudaBackend, DeviceCountGivesGpusOrAReason) {
  absl::StatusOr<int> n = cuda::device_count();
  if (n.ok()) {
    EXPECT_GE(*n, 1);
  } else {
    const std::string msg(n.status().message());
    EXPECT_NE(msg.find("cudaGetDeviceCount"), std::string::npos) << msg;
    std::printf("no GPU usable: %s\n", msg.c_str());
  }
}

TEST(CudaBackend, InitFailsCleanlyOrRejectsBadDevices) {
  absl::StatusOr<int> n = cuda::device_count();
  if (!n.ok()) {
    // No GPU: init reports the same reason instead of crashing, and registers nothing.
    absl::Status st = cuda::init(0);
    EXPECT_FALSE(st.ok());
    EXPECT_EQ(st.code(), n.status().code());
    EXPECT_FALSE(has_allocator(DeviceType::kCUDA));
    return;
  }
  EXPECT_EQ(cuda::init(-1).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(cuda::init(*n).code(), absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(cuda::init(0).ok());
  ASSERT_TRUE(cuda::init(0).ok());  // idempotent
  EXPECT_TRUE(has_allocator(DeviceType::kCUDA));
}

// A failing entry returns its code and leaves a sentence naming the CUDA call, the plugin's file
// and line and the runtime's error name; plugin_status turns both into a Status.
TEST(CudaBackend, PluginErrorsNameCallFileLineAndError) {
  absl::StatusOr<const CmoeCudaApi*> loaded = cuda::plugin_api();
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  const CmoeCudaApi& api = **loaded;
  EXPECT_TRUE(cuda::plugin_status(api, CMOE_CUDA_OK).ok());
  // No device has index -1: invalid device with a GPU, the driver's reason without one.
  const int32_t code = api.set_device(-1);
  ASSERT_NE(code, CMOE_CUDA_OK);
  const absl::Status st = cuda::plugin_status(api, code);
  const std::string msg(st.message());
  EXPECT_NE(msg.find("cudaSetDevice(device) failed at core/cuda/plugin/runtime.cpp:"),
            std::string::npos)
      << msg;
  EXPECT_NE(msg.find("(cudaError"), std::string::npos) << msg;
  EXPECT_EQ(st.code(), cuda::device_count().ok() ? absl::StatusCode::kInvalidArgument
                                                 : cuda::device_count().status().code())
      << msg;
  // The slot is per thread: another thread sees none of it.
  std::string other = "unset";
  std::thread([&] { other = api.last_error(); }).join();
  EXPECT_EQ(other, "");
  // Out of range arguments to an entry are refused with a sentence, not passed to cuBLAS.
  const int32_t bad = api.blas_matmul(nullptr, nullptr, nullptr, CMOE_CUDA_I64, 1, 1, 1, 0, 0,
                                      1.0f, 0.0f, nullptr);
  EXPECT_EQ(bad, CMOE_CUDA_INVALID_ARGUMENT);
  EXPECT_NE(std::string(api.last_error()).find("blas_matmul: input dtype code 3"),
            std::string::npos)
      << api.last_error();
}

// ---- GPU ----------------------------------------------------------------------------------

TEST(CudaBackend, AllocatorRoundTripAndReuse) {
  CMOE_REQUIRE_GPU();
  cuda::CachingAllocator& alloc = cuda::caching_allocator();
  Tensor host = random_f32({1000}, 1);
  const size_t in_use = alloc.bytes_in_use();
  int64_t raw_allocs = 0;
  void* first = nullptr;
  {
    Tensor dev = host.to(cuda_device(0));
    EXPECT_TRUE(dev.device().is_cuda());
    EXPECT_EQ(alloc.bytes_in_use(), in_use + cuda::caching_block_size(4000));
    EXPECT_EQ(dev.to(kCPU).to_floats(), host.to_floats());
    raw_allocs = alloc.stats().raw_allocs;
    first = dev.raw_data();
  }
  EXPECT_EQ(alloc.bytes_in_use(), in_use);
  // The same size class again is served from the cache: same block, no cudaMalloc.
  Tensor again = Tensor::empty({999}, DType::kF32, cuda_device(0));
  EXPECT_EQ(again.raw_data(), first);
  EXPECT_EQ(alloc.stats().raw_allocs, raw_allocs);
}

TEST(CudaBackend, TensorToCudaAndBack) {
  CMOE_REQUIRE_GPU();
  Tensor f = random_f32({7, 33}, 2);
  Tensor b = f.to_dtype(DType::kBF16);
  std::vector<int32_t> ints(50);
  for (int i = 0; i < 50; ++i) ints[i] = i * 7919 - 100000;
  Tensor n = Tensor::from_ints({5, 10}, ints);
  for (const Tensor& t : {f, b, n}) {
    Tensor back = t.to(cuda_device(0)).clone().to(kCPU);  // H2D, D2D, D2H
    ASSERT_EQ(back.shape(), t.shape());
    ASSERT_EQ(back.dtype(), t.dtype());
    EXPECT_EQ(std::memcmp(back.raw_data(), t.raw_data(), t.nbytes()), 0) << t.str();
  }
  // A dim-0 slice of a CUDA tensor copies from its byte offset.
  Tensor rows = f.to(cuda_device(0)).slice0(2, 5).to(kCPU);
  EXPECT_EQ(std::memcmp(rows.raw_data(), f.slice0(2, 5).raw_data(), rows.nbytes()), 0);
  // zeros and copy_from on the device.
  Tensor z = Tensor::zeros({3, 300}, DType::kF32, cuda_device(0));
  for (float v : z.to_floats()) ASSERT_EQ(v, 0.0f);
  Tensor d = Tensor::empty({7, 33}, DType::kF32, cuda_device(0));
  d.copy_from(f);
  EXPECT_EQ(d.to_floats(), f.to_floats());
}

TEST(CudaKernels, Bf16ConversionMatchesCpuBitForBit) {
  CMOE_REQUIRE_GPU();
  absl::StatusOr<cuda::Stream> stream = cuda::Stream::create();
  ASSERT_TRUE(stream.ok()) << stream.status().message();
  // Larger than kMaxBlocks * kThreads (kernels.cu) so the grid-stride loop wraps, with an odd
  // tail; the first entries are the rounding and special cases.
  const int64_t n = (int64_t{1} << 20) + 4099;
  Tensor x = random_f32({n}, 3);
  const float specials[] = {
      1.0f + 1.0f / 256,         // tie -> even (1.0)
      1.0f + 3.0f / 256,         // tie -> even (1 + 2^-6)
      -1.0f - 1.0f / 256,        // negative tie
      std::numeric_limits<float>::max(),  // rounds up to +inf
      std::numeric_limits<float>::infinity(),
      -std::numeric_limits<float>::infinity(),
      std::numeric_limits<float>::quiet_NaN(),
      bits_f32(0xff800001u),     // signalling NaN with payload: quieted, sign kept
      std::numeric_limits<float>::denorm_min(),
      bits_f32(0x00ffffffu),     // all-ones mantissa: rounding carries into the exponent
      -0.0f,
      0.0f};
  for (size_t i = 0; i < std::size(specials); ++i) x.data<float>()[i] = specials[i];
  Tensor dx = x.to(cuda_device(0));
  Tensor db = Tensor::empty({n}, DType::kBF16, cuda_device(0));
  cuda::convert_dtype(db, dx, stream->get());
  ASSERT_TRUE(stream->synchronize().ok());
  Tensor got = db.to(kCPU);
  int mismatches = 0;
  for (int64_t i = 0; i < n; ++i) {
    const uint16_t want = f32_to_bf16(x.data<float>()[i]).bits;
    if (got.data<bf16>()[i].bits != want && ++mismatches <= 5) {
      ADD_FAILURE() << "element " << i << ": x bits 0x" << std::hex << f32_bits(x.data<float>()[i])
                    << " gpu 0x" << got.data<bf16>()[i].bits << " cpu 0x" << want;
    }
  }
  EXPECT_EQ(mismatches, 0);

  // bf16 -> f32 over all 65536 bit patterns: exact, NaN payloads included.
  Tensor all = Tensor::empty({65536}, DType::kBF16);
  for (int i = 0; i < 65536; ++i) all.data<bf16>()[i].bits = static_cast<uint16_t>(i);
  Tensor df = Tensor::empty({65536}, DType::kF32, cuda_device(0));
  cuda::convert_dtype(df, all.to(cuda_device(0)), stream->get());
  ASSERT_TRUE(stream->synchronize().ok());
  Tensor f = df.to(kCPU);
  for (int i = 0; i < 65536; ++i) {
    ASSERT_EQ(f32_bits(f.data<float>()[i]), f32_bits(bf16_to_f32(all.data<bf16>()[i]))) << i;
  }
}

TEST(CudaKernels, AddMatchesCpuExactly) {
  CMOE_REQUIRE_GPU();
  absl::StatusOr<cuda::Stream> stream = cuda::Stream::create();
  ASSERT_TRUE(stream.ok()) << stream.status().message();
  for (int64_t n : {int64_t{1}, int64_t{1037}, (int64_t{1} << 20) + 3}) {
    Tensor a = random_f32({n}, 4);
    Tensor b = random_f32({n}, 5);
    Tensor da = a.to(cuda_device(0));
    Tensor db = b.to(cuda_device(0));
    Tensor out = Tensor::empty({n}, DType::kF32, cuda_device(0));
    cuda::add(out, da, db, stream->get());
    cuda::add(da, da, db, stream->get());  // in place: out aliases a
    ASSERT_TRUE(stream->synchronize().ok());
    std::vector<float> got = out.to_floats();
    std::vector<float> got_inplace = da.to_floats();
    for (int64_t i = 0; i < n; ++i) {
      const float want = a.data<float>()[i] + b.data<float>()[i];  // one f32 rounding, like the GPU
      ASSERT_EQ(got[i], want) << "n " << n << " i " << i;
      ASSERT_EQ(got_inplace[i], want) << "n " << n << " i " << i;
    }
  }
}

// c = alpha * op(a) @ op(b) + beta * c in double, from a and b as the GPU sees them.
std::vector<double> naive_matmul(const std::vector<float>& a, const std::vector<float>& b,
                                 const std::vector<float>& c, int64_t m, int64_t n, int64_t k,
                                 bool trans_a, bool trans_b, float alpha, float beta) {
  std::vector<double> out(m * n);
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      double acc = 0;
      for (int64_t p = 0; p < k; ++p) {
        const double av = trans_a ? a[p * m + i] : a[i * k + p];
        const double bv = trans_b ? b[j * k + p] : b[p * n + j];
        acc += av * bv;
      }
      out[i * n + j] = alpha * acc + (beta == 0.0f ? 0.0 : beta * double{c[i * n + j]});
    }
  }
  return out;
}

// Both dtypes accumulate in f32 over K = 53 unit-normal products (bf16 x bf16 products are
// exact in f32), so the error is f32 summation error: well under 1e-4 relative to sum |a||b|.
void check_matmul(DType dtype) {
  absl::StatusOr<cuda::BlasHandle> blas = cuda::BlasHandle::create();
  ASSERT_TRUE(blas.ok()) << blas.status().message();
  const int64_t m = 37, k = 53, n = 29;
  for (bool trans_a : {false, true}) {
    for (bool trans_b : {false, true}) {
      for (float beta : {0.0f, 0.25f}) {
        Tensor a = random_f32(trans_a ? Shape{k, m} : Shape{m, k}, 6).to_dtype(dtype);
        Tensor b = random_f32(trans_b ? Shape{n, k} : Shape{k, n}, 7).to_dtype(dtype);
        Tensor c = random_f32({m, n}, 8);
        // beta == 0 must not read c: poison it.
        if (beta == 0.0f) c.fill_(std::numeric_limits<float>::quiet_NaN());
        const std::vector<float> av = a.to_floats(), bv = b.to_floats(), cv = c.to_floats();
        Tensor dc = c.to(cuda_device(0));
        cuda::matmul(dc, a.to(cuda_device(0)), b.to(cuda_device(0)), trans_a, trans_b, 0.5f, beta,
                     *blas);
        std::vector<float> got = dc.to_floats();  // D2H on the legacy stream waits for cuBLAS
        std::vector<double> want =
            naive_matmul(av, bv, cv, m, n, k, trans_a, trans_b, 0.5f, beta);
        for (int64_t i = 0; i < m * n; ++i) {
          ASSERT_NEAR(got[i], want[i], 1e-4 * (1.0 + std::abs(want[i])))
              << dtype_name(dtype) << " trans_a " << trans_a << " trans_b " << trans_b
              << " beta " << beta << " at " << i;
        }
      }
    }
  }
  // K = 0: c = beta * c.
  Tensor c = random_f32({4, 5}, 9);
  Tensor dc = c.to(cuda_device(0));
  Tensor empty_a = Tensor::empty({4, 0}, dtype, cuda_device(0));
  Tensor empty_b = Tensor::empty({0, 5}, dtype, cuda_device(0));
  cuda::matmul(dc, empty_a, empty_b, false, false, 1.0f, 0.5f, *blas);
  std::vector<float> got = dc.to_floats();
  for (int i = 0; i < 20; ++i) EXPECT_EQ(got[i], 0.5f * c.data<float>()[i]);
}

TEST(CudaBlas, MatmulF32MatchesNaiveReference) {
  CMOE_REQUIRE_GPU();
  check_matmul(DType::kF32);
}

TEST(CudaBlas, MatmulBf16MatchesNaiveReference) {
  CMOE_REQUIRE_GPU();
  check_matmul(DType::kBF16);
}

}  // namespace
}  // namespace cmoe
