// blas.cpp — the plugin's cuBLAS entries: handles and the row-major matmul on cublasGemmEx.
//
// cuBLAS is column-major; a row-major (M, N) matrix is the column-major (N, M) matrix of its
// transpose, so C = op(A) op(B) is computed as C^T = op(B)^T op(A)^T by passing B first — no
// copies. f32 inputs are not rounded to TF32 (CUBLAS_COMPUTE_32F, default math mode).
#include <cublas_v2.h>

#include "core/cuda/plugin/check.h"
#include "core/cuda/plugin/entries.h"

namespace cmoe::cuda_plugin {

namespace {
cublasHandle_t to_cublas(CmoeBlasHandle h) { return reinterpret_cast<cublasHandle_t>(h); }
}  // namespace

int32_t api_blas_create(CmoeBlasHandle* handle) {
  cublasHandle_t h = nullptr;
  CUBLAS_TRY(cublasCreate(&h));
  // Pin full-f32 math: cuBLAS may otherwise be allowed TF32 by the environment.
  const cublasStatus_t st = cublasSetMathMode(h, CUBLAS_DEFAULT_MATH);
  if (st != CUBLAS_STATUS_SUCCESS) {
    (void)cublasDestroy(h);
    return cublas_fail(st, "cublasSetMathMode(h, CUBLAS_DEFAULT_MATH)", __FILE__, __LINE__);
  }
  *handle = reinterpret_cast<CmoeBlasHandle>(h);
  return CMOE_CUDA_OK;
}

int32_t api_blas_destroy(CmoeBlasHandle handle) {
  CUBLAS_TRY(cublasDestroy(to_cublas(handle)));
  return CMOE_CUDA_OK;
}

int32_t api_blas_set_stream(CmoeBlasHandle handle, CmoeCudaStream stream) {
  CUBLAS_TRY(cublasSetStream(to_cublas(handle), to_cuda(stream)));
  return CMOE_CUDA_OK;
}

int32_t api_blas_matmul(float* c, const void* a, const void* b, int32_t dtype, int64_t m, int64_t n,
                        int64_t k, int32_t trans_a, int32_t trans_b, float alpha, float beta,
                        CmoeBlasHandle handle) {
  if (dtype != CMOE_CUDA_F32 && dtype != CMOE_CUDA_BF16) {
    return set_error(CMOE_CUDA_INVALID_ARGUMENT,
                     "blas_matmul: input dtype code %d (want F32 or BF16)",
                     static_cast<int>(dtype));
  }
  if (m < 0 || n < 0 || k < 0) {
    return set_error(CMOE_CUDA_INVALID_ARGUMENT, "blas_matmul: negative size m %lld n %lld k %lld",
                     static_cast<long long>(m), static_cast<long long>(n),
                     static_cast<long long>(k));
  }
  cublasHandle_t h = to_cublas(handle);
  if (m == 0 || n == 0) return CMOE_CUDA_OK;
  if (k == 0) {  // op(a) @ op(b) is all zeros: c = beta * c.
    if (beta == 0.0f) {
      cudaStream_t stream = nullptr;
      CUBLAS_TRY(cublasGetStream(h, &stream));
      CUDA_TRY(cudaMemsetAsync(c, 0, static_cast<size_t>(m * n) * sizeof(float), stream));
    } else {
      CUBLAS_TRY(cublasSscal_64(h, m * n, &beta, c, 1));
    }
    return CMOE_CUDA_OK;
  }
  const cudaDataType_t in_type = dtype == CMOE_CUDA_F32 ? CUDA_R_32F : CUDA_R_16BF;
  // Column-major view: C^T (n x m) = op(B)^T (n x k) @ op(A)^T (k x m).
  const int64_t lda = trans_b ? k : n;  // b read column-major as (n, k), or (k, n) if trans_b
  const int64_t ldb = trans_a ? m : k;  // a read column-major as (k, m), or (m, k) if trans_a
  CUBLAS_TRY(cublasGemmEx_64(h, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N,
                             trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, n, m, k, &alpha, b, in_type, lda,
                             a, in_type, ldb, &beta, c, CUDA_R_32F, n, CUBLAS_COMPUTE_32F,
                             CUBLAS_GEMM_DEFAULT));
  return CMOE_CUDA_OK;
}

}  // namespace cmoe::cuda_plugin
