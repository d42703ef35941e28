// check.cpp — formatting of CUDA runtime and cuBLAS failures into the last-error slot.
#include "core/cuda/plugin/check.h"

#include <cstdarg>
#include <cstdio>

#include "core/cuda/plugin/entries.h"

namespace cmoe::cuda_plugin {

namespace {

// One sentence per thread: a failure's text, read by the caller right after the failed entry.
thread_local char t_last_error[1024] = "";

int32_t code_for(cudaError_t err) {
  switch (err) {
    case cudaErrorMemoryAllocation: return CMOE_CUDA_RESOURCE_EXHAUSTED;
    case cudaErrorNoDevice:
    case cudaErrorInsufficientDriver:
    case cudaErrorDevicesUnavailable:
    case cudaErrorCudartUnloading: return CMOE_CUDA_UNAVAILABLE;
    case cudaErrorInvalidDevice: return CMOE_CUDA_INVALID_ARGUMENT;
    default: return CMOE_CUDA_INTERNAL;
  }
}

}  // namespace

int32_t set_error(int32_t code, const char* fmt, ...) {
  va_list args;
  va_start(args, fmt);
  std::vsnprintf(t_last_error, sizeof(t_last_error), fmt, args);
  va_end(args);
  return code;
}

int32_t cuda_fail(cudaError_t err, const char* call, const char* file, int line) {
  if (err == cudaSuccess) return CMOE_CUDA_OK;
  (void)cudaGetLastError();
  return set_error(code_for(err), "%s failed at %s:%d: %s (%s)", call, file, line,
                   cudaGetErrorString(err), cudaGetErrorName(err));
}

int32_t cublas_fail(cublasStatus_t st, const char* call, const char* file, int line) {
  if (st == CUBLAS_STATUS_SUCCESS) return CMOE_CUDA_OK;
  const int32_t code = st == CUBLAS_STATUS_ALLOC_FAILED      ? CMOE_CUDA_RESOURCE_EXHAUSTED
                       : st == CUBLAS_STATUS_NOT_INITIALIZED ? CMOE_CUDA_UNAVAILABLE
                                                             : CMOE_CUDA_INTERNAL;
  return set_error(code, "%s failed at %s:%d: %s (%s)", call, file, line, cublasGetStatusString(st),
                   cublasGetStatusName(st));
}

const char* api_last_error() { return t_last_error; }

}  // namespace cmoe::cuda_plugin
