// ops.cpp — argument checks and dispatch for the tensor-level CUDA element-wise ops.
#include "core/cuda/ops.h"

#include "core/check.h"
#include "core/cuda/plugin_loader.h"

namespace cmoe::cuda {

void convert_dtype(Tensor& out, const Tensor& x, StreamHandle stream) {
  CMOE_CHECK(out.device().is_cuda() && x.device() == out.device() && out.shape() == x.shape(),
             "convert_dtype ", x.str(), " into ", out.str(), ": same shape on one CUDA device");
  const CmoeCudaApi& api = loaded_api();
  const int64_t n = x.numel();
  if (x.dtype() == out.dtype()) {
    plugin_check(api,
                 api.memcpy_async(out.raw_data(), x.raw_data(), x.nbytes(), CMOE_CUDA_D2D, stream),
                 "convert_dtype (device copy)");
  } else if (x.dtype() == DType::kF32 && out.dtype() == DType::kBF16) {
    plugin_check(
        api,
        api.f32_to_bf16(reinterpret_cast<uint16_t*>(out.data<bf16>()), x.data<float>(), n, stream),
        "convert_dtype f32 -> bf16");
  } else if (x.dtype() == DType::kBF16 && out.dtype() == DType::kF32) {
    plugin_check(api,
                 api.bf16_to_f32(out.data<float>(),
                                 reinterpret_cast<const uint16_t*>(x.data<bf16>()), n, stream),
                 "convert_dtype bf16 -> f32");
  } else {
    CMOE_CHECK(false, "convert_dtype supports f32 <-> bf16, got ", x.str(), " -> ", out.str());
  }
}

void add(Tensor& out, const Tensor& a, const Tensor& b, StreamHandle stream) {
  CMOE_CHECK(out.device().is_cuda() && a.device() == out.device() && b.device() == out.device() &&
                 a.shape() == out.shape() && b.shape() == out.shape() &&
                 out.dtype() == DType::kF32 && a.dtype() == DType::kF32 && b.dtype() == DType::kF32,
             "add ", a.str(), " + ", b.str(), " into ", out.str(),
             ": same shape, f32, on one CUDA device");
  const CmoeCudaApi& api = loaded_api();
  plugin_check(
      api, api.add_f32(out.data<float>(), a.data<float>(), b.data<float>(), out.numel(), stream),
      "cuda add");
}

}  // namespace cmoe::cuda
