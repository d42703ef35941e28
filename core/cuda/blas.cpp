// blas.cpp — BlasHandle and the checked row-major matmul over the plugin's blas_matmul.
#include "core/cuda/blas.h"

#include <cstdio>
#include <string>

#include "core/check.h"
#include "core/cuda/plugin_loader.h"

namespace cmoe::cuda {

absl::StatusOr<BlasHandle> BlasHandle::create() {
  CMOE_ASSIGN_OR_RETURN(const CmoeCudaApi* api, plugin_api());
  CmoeBlasHandle h = nullptr;
  CMOE_RETURN_IF_ERROR(plugin_status(*api, api->blas_create(&h)));
  return BlasHandle(h);
}

BlasHandle& BlasHandle::operator=(BlasHandle&& o) noexcept {
  if (this != &o) {
    reset();
    handle_ = o.handle_;
    o.handle_ = nullptr;
  }
  return *this;
}

BlasHandle::~BlasHandle() { reset(); }

void BlasHandle::reset() {
  if (handle_ == nullptr) return;
  const CmoeCudaApi& api = loaded_api();
  absl::Status st = plugin_status(api, api.blas_destroy(handle_));
  if (!st.ok()) std::fprintf(stderr, "cmoe: %s\n", std::string(st.message()).c_str());
  handle_ = nullptr;
}

absl::Status BlasHandle::set_stream(StreamHandle stream) {
  const CmoeCudaApi& api = loaded_api();
  return plugin_status(api, api.blas_set_stream(handle_, stream));
}

void matmul(Tensor& c, const Tensor& a, const Tensor& b, bool trans_a, bool trans_b, float alpha,
            float beta, const BlasHandle& blas) {
  CMOE_CHECK(a.rank() == 2 && b.rank() == 2 && c.rank() == 2, "matmul needs 2-D tensors, got ",
             a.str(), " ", b.str(), " -> ", c.str());
  CMOE_CHECK(c.device().is_cuda() && a.device() == c.device() && b.device() == c.device(),
             "cuda matmul needs all tensors on one CUDA device: ", a.str(), " ", b.str(), " -> ",
             c.str());
  CMOE_CHECK(c.dtype() == DType::kF32 && a.dtype() == b.dtype() &&
                 (a.dtype() == DType::kF32 || a.dtype() == DType::kBF16),
             "matmul dtypes: a, b both f32 or both bf16, c f32; got ", a.str(), " ", b.str(),
             " -> ", c.str());
  const int64_t m = trans_a ? a.dim(1) : a.dim(0);
  const int64_t k = trans_a ? a.dim(0) : a.dim(1);
  const int64_t kb = trans_b ? b.dim(1) : b.dim(0);
  const int64_t n = trans_b ? b.dim(0) : b.dim(1);
  CMOE_CHECK(k == kb && c.dim(0) == m && c.dim(1) == n, "matmul shapes: op(a) ", m, "x", k,
             ", op(b) ", kb, "x", n, ", c ", c.shape().str());
  const CmoeCudaApi& api = loaded_api();
  plugin_check(api,
               api.blas_matmul(c.data<float>(), a.raw_data(), b.raw_data(),
                               a.dtype() == DType::kF32 ? CMOE_CUDA_F32 : CMOE_CUDA_BF16, m, n, k,
                               trans_a, trans_b, alpha, beta, blas.get()),
               "cuda matmul");
}

}  // namespace cmoe::cuda
