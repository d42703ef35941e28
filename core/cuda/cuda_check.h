// cuda_check.h — turns CUDA runtime and cuBLAS return codes into absl::Status (for core/cuda,
// and the NCCL communicator in parallel/backend/nccl.cpp).
//
// CUDA_CHECK(call) / CUBLAS_CHECK(call) evaluate `call` once and yield an absl::Status that
// names the call, the file and line, and the library's error string, so a failure on a user's
// machine (no driver, no GPU, out of memory) reads as a sentence rather than an error code.
// The *_FATAL forms are for failures that can only be bugs or a broken device (a kernel launch
// error, a copy between valid allocations): they abort through CMOE_CHECK with the same text.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include "absl/status/status.h"
#include "core/check.h"

namespace cmoe::cuda {

// OK for cudaSuccess; otherwise an error naming `call`, `file`:`line` and cudaGetErrorString.
// Clears the runtime's last-error slot so the failure is not reported twice.
absl::Status cuda_status(cudaError_t err, const char* call, const char* file, int line);
absl::Status cublas_status(cublasStatus_t st, const char* call, const char* file, int line);

}  // namespace cmoe::cuda

#define CUDA_CHECK(call) ::cmoe::cuda::cuda_status((call), #call, __FILE__, __LINE__)
#define CUBLAS_CHECK(call) ::cmoe::cuda::cublas_status((call), #call, __FILE__, __LINE__)

#define CMOE_CUDA_FATAL_IMPL_(status_expr)                                 \
  do {                                                                     \
    const ::absl::Status cmoe_cuda_status_ = (status_expr);                \
    CMOE_CHECK(cmoe_cuda_status_.ok(), std::string(cmoe_cuda_status_.message())); \
  } while (0)
#define CUDA_CHECK_FATAL(call) CMOE_CUDA_FATAL_IMPL_(CUDA_CHECK(call))
#define CUBLAS_CHECK_FATAL(call) CMOE_CUDA_FATAL_IMPL_(CUBLAS_CHECK(call))
