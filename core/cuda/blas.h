// blas.h — cuBLAS handle ownership and dense matmul on CUDA tensors.
//
// matmul has the semantics of cmoe::ops::matmul (core/ops/matmul.h) on CUDA storage: row-major
// 2-D tensors, f32 or bf16 inputs, f32 output, f32 accumulation (CUBLAS_COMPUTE_32F; f32 inputs
// are not rounded to TF32). cuBLAS is column-major; a row-major (M, N) matrix is the
// column-major (N, M) matrix of its transpose, so C = op(A) op(B) is computed as
// C^T = op(B)^T op(A)^T by passing B first — no copies.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include "absl/status/statusor.h"
#include "core/tensor.h"

namespace cmoe::cuda {

// Owns one cublasHandle_t (bound to the device current at create()). Move-only.
class BlasHandle {
 public:
  static absl::StatusOr<BlasHandle> create();
  BlasHandle(BlasHandle&& o) noexcept : handle_(o.handle_) { o.handle_ = nullptr; }
  BlasHandle& operator=(BlasHandle&& o) noexcept;
  BlasHandle(const BlasHandle&) = delete;
  BlasHandle& operator=(const BlasHandle&) = delete;
  ~BlasHandle();

  cublasHandle_t get() const { return handle_; }
  // Subsequent calls through this handle are queued on `stream`.
  absl::Status set_stream(cudaStream_t stream);

 private:
  explicit BlasHandle(cublasHandle_t h) : handle_(h) {}
  void reset();
  cublasHandle_t handle_ = nullptr;
};

// c = alpha * op(a) @ op(b) + beta * c, op(x) = x^T when the flag is set (on blas's stream).
// a: (M, K) or (K, M) if trans_a; b: (K, N) or (N, K) if trans_b; c: (M, N) f32.
// a and b: both f32 or both bf16; all three on one CUDA device. beta == 0 never reads c.
void matmul(Tensor& c, const Tensor& a, const Tensor& b, bool trans_a, bool trans_b, float alpha,
            float beta, const BlasHandle& blas);

}  // namespace cmoe::cuda
