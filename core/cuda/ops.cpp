// ops.cpp — argument checks and dispatch for the tensor-level CUDA element-wise ops.
#include "core/cuda/ops.h"

#include "core/cuda/cuda_check.h"
#include "core/cuda/kernels.h"

namespace cmoe::cuda {

void convert_dtype(Tensor& out, const Tensor& x, cudaStream_t stream) {
  CMOE_CHECK(out.device().is_cuda() && x.device() == out.device() && out.shape() == x.shape(),
             "convert_dtype ", x.str(), " into ", out.str(), ": same shape on one CUDA device");
  const int64_t n = x.numel();
  if (x.dtype() == out.dtype()) {
    CUDA_CHECK_FATAL(cudaMemcpyAsync(out.raw_data(), x.raw_data(), x.nbytes(),
                                     cudaMemcpyDeviceToDevice, stream));
  } else if (x.dtype() == DType::kF32 && out.dtype() == DType::kBF16) {
    launch_f32_to_bf16(reinterpret_cast<uint16_t*>(out.data<bf16>()), x.data<float>(), n, stream);
  } else if (x.dtype() == DType::kBF16 && out.dtype() == DType::kF32) {
    launch_bf16_to_f32(out.data<float>(), reinterpret_cast<const uint16_t*>(x.data<bf16>()), n,
                       stream);
  } else {
    CMOE_CHECK(false, "convert_dtype supports f32 <-> bf16, got ", x.str(), " -> ", out.str());
  }
}

void add(Tensor& out, const Tensor& a, const Tensor& b, cudaStream_t stream) {
  CMOE_CHECK(out.device().is_cuda() && a.device() == out.device() && b.device() == out.device() &&
                 a.shape() == out.shape() && b.shape() == out.shape(),
             "add ", a.str(), " + ", b.str(), " into ", out.str(),
             ": same shape on one CUDA device");
  launch_add_f32(out.data<float>(), a.data<float>(), b.data<float>(), out.numel(), stream);
}

}  // namespace cmoe::cuda
