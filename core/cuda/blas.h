// blas.h — cuBLAS handle ownership and dense matmul on CUDA tensors (through the CUDA plugin).
//
// matmul has the semantics of cmoe::ops::matmul (core/ops/matmul.h) on CUDA storage: row-major
// 2-D tensors, f32 or bf16 inputs, f32 output, f32 accumulation (f32 inputs are not rounded to
// TF32). This file checks shapes, dtypes and devices; the plugin's blas_matmul runs
// cublasGemmEx on the column-major view (core/cuda/plugin/blas.cpp).
#pragma once

#include "absl/status/statusor.h"
#include "core/cuda/stream.h"
#include "core/tensor.h"

namespace cmoe::cuda {

// Owns one cuBLAS handle (bound to the device current at create()). Move-only.
class BlasHandle {
 public:
  // Loads the CUDA backend if needed.
  static absl::StatusOr<BlasHandle> create();
  BlasHandle(BlasHandle&& o) noexcept : handle_(o.handle_) { o.handle_ = nullptr; }
  BlasHandle& operator=(BlasHandle&& o) noexcept;
  BlasHandle(const BlasHandle&) = delete;
  BlasHandle& operator=(const BlasHandle&) = delete;
  ~BlasHandle();

  CmoeBlasHandle get() const { return handle_; }
  // Subsequent calls through this handle are queued on `stream`.
  absl::Status set_stream(StreamHandle stream);

 private:
  explicit BlasHandle(CmoeBlasHandle h) : handle_(h) {}
  void reset();
  CmoeBlasHandle handle_ = nullptr;
};

// c = alpha * op(a) @ op(b) + beta * c, op(x) = x^T when the flag is set (on blas's stream).
// a: (M, K) or (K, M) if trans_a; b: (K, N) or (N, K) if trans_b; c: (M, N) f32.
// a and b: both f32 or both bf16; all three on one CUDA device. beta == 0 never reads c.
void matmul(Tensor& c, const Tensor& a, const Tensor& b, bool trans_a, bool trans_b, float alpha,
            float beta, const BlasHandle& blas);

}  // namespace cmoe::cuda
