// context.cpp — the current device, per-device cuBLAS handles and scratch (see context.h).
#include "core/cuda/context.h"

#include <algorithm>
#include <chrono>
#include <map>
#include <mutex>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/cuda/plugin_loader.h"

namespace cmoe::cuda {

const CmoeCudaApi& api() { return loaded_api(); }

void check(int32_t code, const char* what) {
  if (code != CMOE_CUDA_OK) plugin_check(api(), code, what);
}

void use_device(Device device) {
  CMOE_CHECK(device.is_cuda(), "use_device(", device.str(), ")");
  thread_local int current = -1;
  if (current == device.index) return;
  const CmoeCudaApi& a = api();
  int32_t now = -1;
  check(a.get_device(&now), "cudaGetDevice");
  if (now != device.index) check(a.set_device(device.index), "cudaSetDevice");
  current = device.index;
}

const BlasHandle& blas(Device device) {
  use_device(device);
  // Per thread: a cuBLAS handle carries its stream and workspace, so threads do not share one.
  thread_local std::map<int, BlasHandle*>* handles = new std::map<int, BlasHandle*>();
  auto it = handles->find(device.index);
  if (it != handles->end()) return *it->second;
  absl::StatusOr<BlasHandle> h = BlasHandle::create();
  CMOE_CHECK(h.ok(), "cuBLAS handle for ", device.str(), ": ", h.status().message());
  auto* owned = new BlasHandle(std::move(*h));  // deliberately never destroyed (see context.h)
  const absl::Status st = owned->set_stream(compute_stream());
  CMOE_CHECK(st.ok(), "cuBLAS stream for ", device.str(), ": ", st.message());
  handles->emplace(device.index, owned);
  return *owned;
}

void synchronize(Device device) {
  use_device(device);
  check(api().stream_synchronize(compute_stream()), "synchronize the compute stream");
}

double matmul_peak_gflops(Device device, DType dtype) {
  CMOE_CHECK(dtype == DType::kF32 || dtype == DType::kBF16, "matmul_peak_gflops: ", dtype_name(dtype));
  static std::mutex mu;
  static std::map<std::pair<int, int>, double> cache;
  std::lock_guard<std::mutex> lock(mu);
  const auto key = std::make_pair(device.index, static_cast<int>(dtype));
  if (auto it = cache.find(key); it != cache.end()) return it->second;
  const int64_t n = dtype == DType::kBF16 ? 8192 : 4096;
  Tensor a = Tensor::zeros({n, n}, dtype, device), b = Tensor::zeros({n, n}, dtype, device);
  Tensor c = Tensor::empty({n, n}, DType::kF32, device);
  const BlasHandle& h = blas(device);
  for (int i = 0; i < 2; ++i) matmul(c, a, b, false, true, 1.0f, 0.0f, h);  // warm-up (kernel selection)
  synchronize(device);
  double best = 0, total = 0;
  while (total < 0.3) {
    const auto t0 = std::chrono::steady_clock::now();
    matmul(c, a, b, false, true, 1.0f, 0.0f, h);
    synchronize(device);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    total += s;
    best = std::max(best, 2.0 * n * n * n / s / 1e9);
  }
  cache[key] = best;
  return best;
}

Tensor scratch(Device device, size_t bytes) {
  // i64 elements: 8-byte aligned views for the f64 and pointer scratch kernels take.
  return Tensor::empty({static_cast<int64_t>((bytes + 7) / 8)}, DType::kI64, device);
}

}  // namespace cmoe::cuda
