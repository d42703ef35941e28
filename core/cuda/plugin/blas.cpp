// blas.cpp — the plugin's cuBLAS entries: handles and the row-major matmul on cublasGemmEx.
//
// cuBLAS is column-major; a row-major (M, N) matrix is the column-major (N, M) matrix of its
// transpose, so C = op(A) op(B) is computed as C^T = op(B)^T op(A)^T by passing B first — no
// copies. f32 inputs are not rounded to TF32 (CUBLAS_COMPUTE_32F, default math mode).
#include <cublas_v2.h>

#include <atomic>
#include <vector>

#include "core/cuda/plugin/check.h"
#include "core/cuda/plugin/entries.h"

namespace cmoe::cuda_plugin {

namespace {
cublasHandle_t to_cublas(CmoeBlasHandle h) { return reinterpret_cast<cublasHandle_t>(h); }

// Whether cuBLAS refused the grouped call for an input type (then every call goes per group),
// and how the last call ran (blas_grouped_path).
std::atomic<bool> g_grouped_refused[2] = {false, false};  // [F32, BF16]
std::atomic<int32_t> g_grouped_path{-1};
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

int32_t api_blas_matmul_strided(float* c, const void* a, const void* b, int32_t dtype, int64_t m, int64_t n, int64_t k,
                                int64_t lda, int64_t ldb, int64_t ldc, int64_t stride_a, int64_t stride_b,
                                int64_t stride_c, int64_t batch, int32_t trans_a, int32_t trans_b, float alpha,
                                float beta, CmoeBlasHandle handle) {
  if (dtype != CMOE_CUDA_F32 && dtype != CMOE_CUDA_BF16) {
    return set_error(CMOE_CUDA_INVALID_ARGUMENT, "blas_matmul_strided: input dtype code %d (want F32 or BF16)",
                     static_cast<int>(dtype));
  }
  if (m < 0 || n < 0 || k < 0 || batch < 0) {
    return set_error(CMOE_CUDA_INVALID_ARGUMENT, "blas_matmul_strided: negative size");
  }
  if (m == 0 || n == 0 || k == 0 || batch == 0) return CMOE_CUDA_OK;  // callers never ask for k == 0 with beta
  const cudaDataType_t in_type = dtype == CMOE_CUDA_F32 ? CUDA_R_32F : CUDA_R_16BF;
  // Column-major view: C_i^T (n x m) = op(B_i)^T op(A_i)^T; a row-major leading dimension is the
  // column-major one of the transpose.
  CUBLAS_TRY(cublasGemmStridedBatchedEx_64(to_cublas(handle), trans_b ? CUBLAS_OP_T : CUBLAS_OP_N,
                                           trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, n, m, k, &alpha, b, in_type, ldb,
                                           stride_b, a, in_type, lda, stride_a, &beta, c, CUDA_R_32F, ldc, stride_c,
                                           batch, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  return CMOE_CUDA_OK;
}

int32_t api_blas_grouped_matmul(void* const* c, const void* const* a, const void* const* b, const int64_t* m,
                                const int64_t* n, const int64_t* k, int64_t groups, int32_t dtype, int32_t trans_a,
                                int32_t trans_b, float alpha, float beta, void** device_ptrs, CmoeBlasHandle handle) {
  if (dtype != CMOE_CUDA_F32 && dtype != CMOE_CUDA_BF16) {
    return set_error(CMOE_CUDA_INVALID_ARGUMENT, "blas_grouped_matmul: input dtype code %d (want F32 or BF16)",
                     static_cast<int>(dtype));
  }
  for (int64_t g = 0; g < groups; ++g) {
    if (m[g] < 1 || n[g] < 1 || k[g] < 1) {
      return set_error(CMOE_CUDA_INVALID_ARGUMENT, "blas_grouped_matmul: group %lld has sizes (%lld, %lld, %lld)",
                       static_cast<long long>(g), static_cast<long long>(m[g]), static_cast<long long>(n[g]),
                       static_cast<long long>(k[g]));
    }
  }
  if (groups == 0) return CMOE_CUDA_OK;
  cublasHandle_t h = to_cublas(handle);
  const cudaDataType_t in_type = dtype == CMOE_CUDA_F32 ? CUDA_R_32F : CUDA_R_16BF;
  const cublasOperation_t op_first = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;   // B comes first (column-major view)
  const cublasOperation_t op_second = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  std::atomic<bool>& refused = g_grouped_refused[dtype == CMOE_CUDA_F32 ? 0 : 1];
  if (!refused.load()) {
    // Column-major view of each problem, as in blas_matmul: C^T (n x m) = op(B)^T @ op(A)^T.
    const size_t G = static_cast<size_t>(groups);
    std::vector<cublasOperation_t> ta(G, op_first), tb(G, op_second);
    std::vector<int64_t> mm(G), nn(G), kk(G), lda(G), ldb(G), ldc(G), size(G, 1);
    std::vector<float> alphas(G, alpha), betas(G, beta);
    std::vector<const void*> ptrs(3 * G);  // [B pointers | A pointers | C pointers]
    for (size_t g = 0; g < G; ++g) {
      mm[g] = n[g];
      nn[g] = m[g];
      kk[g] = k[g];
      lda[g] = trans_b ? k[g] : n[g];
      ldb[g] = trans_a ? m[g] : k[g];
      ldc[g] = n[g];
      ptrs[g] = b[g];
      ptrs[G + g] = a[g];
      ptrs[2 * G + g] = c[g];
    }
    cudaStream_t stream = nullptr;
    CUBLAS_TRY(cublasGetStream(h, &stream));
    // The pointer arrays must be device memory; the copy leaves the host vector free on return.
    CUDA_TRY(cudaMemcpyAsync(device_ptrs, ptrs.data(), 3 * G * sizeof(void*), cudaMemcpyHostToDevice, stream));
    void** dev = device_ptrs;  // [B | A | C] pointers, now on the device
    const cublasStatus_t st = cublasGemmGroupedBatchedEx_64(
        h, ta.data(), tb.data(), mm.data(), nn.data(), kk.data(), alphas.data(), dev, in_type, lda.data(),
        dev + G, in_type, ldb.data(), betas.data(), dev + 2 * G, CUDA_R_32F, ldc.data(), groups, size.data(),
        CUBLAS_COMPUTE_32F);
    if (st == CUBLAS_STATUS_SUCCESS) {
      g_grouped_path.store(1);
      return CMOE_CUDA_OK;
    }
    if (st != CUBLAS_STATUS_NOT_SUPPORTED && st != CUBLAS_STATUS_INVALID_VALUE) {
      return cublas_fail(st, "cublasGemmGroupedBatchedEx_64", __FILE__, __LINE__);
    }
    refused.store(true);  // this cuBLAS does not group these types: one GEMM per group from now on
  }
  g_grouped_path.store(0);
  for (int64_t g = 0; g < groups; ++g) {
    const int64_t lda = trans_b ? k[g] : n[g], ldb = trans_a ? m[g] : k[g];
    CUBLAS_TRY(cublasGemmEx_64(h, op_first, op_second, n[g], m[g], k[g], &alpha, b[g], in_type, lda, a[g], in_type,
                               ldb, &beta, c[g], CUDA_R_32F, n[g], CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  }
  return CMOE_CUDA_OK;
}

int32_t api_blas_grouped_path() { return g_grouped_path.load(); }

}  // namespace cmoe::cuda_plugin
