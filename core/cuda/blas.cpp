// blas.cpp — BlasHandle and the row-major matmul on top of cublasGemmEx.
#include "core/cuda/blas.h"

#include <cstdio>
#include <string>

#include "core/cuda/cuda_check.h"

namespace cmoe::cuda {

absl::StatusOr<BlasHandle> BlasHandle::create() {
  cublasHandle_t h = nullptr;
  CMOE_RETURN_IF_ERROR(CUBLAS_CHECK(cublasCreate(&h)));
  BlasHandle handle(h);
  // Pin full-f32 math: cuBLAS may otherwise be allowed TF32 by the environment.
  CMOE_RETURN_IF_ERROR(CUBLAS_CHECK(cublasSetMathMode(h, CUBLAS_DEFAULT_MATH)));
  return handle;
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
  absl::Status st = CUBLAS_CHECK(cublasDestroy(handle_));
  if (!st.ok()) std::fprintf(stderr, "cmoe: %s\n", std::string(st.message()).c_str());
  handle_ = nullptr;
}

absl::Status BlasHandle::set_stream(cudaStream_t stream) {
  return CUBLAS_CHECK(cublasSetStream(handle_, stream));
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
  if (m == 0 || n == 0) return;
  if (k == 0) {  // op(a) @ op(b) is all zeros: c = beta * c.
    cudaStream_t stream = nullptr;
    CUBLAS_CHECK_FATAL(cublasGetStream(blas.get(), &stream));
    if (beta == 0.0f) {
      CUDA_CHECK_FATAL(cudaMemsetAsync(c.raw_data(), 0, c.nbytes(), stream));
    } else {
      CUBLAS_CHECK_FATAL(cublasSscal_64(blas.get(), m * n, &beta, c.data<float>(), 1));
    }
    return;
  }
  const cudaDataType_t in_type = a.dtype() == DType::kF32 ? CUDA_R_32F : CUDA_R_16BF;
  // Column-major view: C^T (n x m) = op(B)^T (n x k) @ op(A)^T (k x m).
  const int64_t lda = trans_b ? k : n;  // b read column-major as (n, k), or (k, n) if trans_b
  const int64_t ldb = trans_a ? m : k;  // a read column-major as (k, m), or (m, k) if trans_a
  CUBLAS_CHECK_FATAL(cublasGemmEx_64(blas.get(), trans_b ? CUBLAS_OP_T : CUBLAS_OP_N,
                                     trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, n, m, k, &alpha,
                                     b.raw_data(), in_type, lda, a.raw_data(), in_type, ldb,
                                     &beta, c.raw_data(), CUDA_R_32F, n, CUBLAS_COMPUTE_32F,
                                     CUBLAS_GEMM_DEFAULT));
}

}  // namespace cmoe::cuda
