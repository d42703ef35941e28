// cuda_check.cpp — formatting of CUDA runtime and cuBLAS failures as absl::Status.
#include "core/cuda/cuda_check.h"

#include "absl/strings/str_cat.h"

namespace cmoe::cuda {

namespace {

absl::StatusCode code_for(cudaError_t err) {
  switch (err) {
    case cudaErrorMemoryAllocation: return absl::StatusCode::kResourceExhausted;
    case cudaErrorNoDevice:
    case cudaErrorInsufficientDriver:
    case cudaErrorDevicesUnavailable:
    case cudaErrorCudartUnloading: return absl::StatusCode::kUnavailable;
    case cudaErrorInvalidDevice: return absl::StatusCode::kInvalidArgument;
    default: return absl::StatusCode::kInternal;
  }
}

}  // namespace

absl::Status cuda_status(cudaError_t err, const char* call, const char* file, int line) {
  if (err == cudaSuccess) return absl::OkStatus();
  // Non-sticky errors stay in the last-error slot; clear it so a later check does not see it.
  (void)cudaGetLastError();
  return absl::Status(code_for(err),
                      absl::StrCat(call, " failed at ", file, ":", line, ": ",
                                   cudaGetErrorString(err), " (", cudaGetErrorName(err), ")"));
}

absl::Status cublas_status(cublasStatus_t st, const char* call, const char* file, int line) {
  if (st == CUBLAS_STATUS_SUCCESS) return absl::OkStatus();
  const absl::StatusCode code =
      st == CUBLAS_STATUS_ALLOC_FAILED      ? absl::StatusCode::kResourceExhausted
      : st == CUBLAS_STATUS_NOT_INITIALIZED ? absl::StatusCode::kUnavailable
                                            : absl::StatusCode::kInternal;
  return absl::Status(
      code, absl::StrCat(call, " failed at ", file, ":", line, ": ", cublasGetStatusString(st),
                         " (", cublasGetStatusName(st), ")"));
}

}  // namespace cmoe::cuda
