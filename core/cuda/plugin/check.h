// check.h — the plugin's error channel: a failed CUDA or cuBLAS call becomes a CmoeCudaCode plus
// a sentence in this thread's last-error slot (read back through the last_error entry).
//
// The plugin links no absl and no cmoe code, so this is plain snprintf into a thread-local
// buffer. CUDA_TRY(call) / CUBLAS_TRY(call) return from the enclosing entry on failure with the
// text "<call> failed at <file>:<line>: <library's error string> (<error name>)". Compiled by
// nvcc too (kernels.cu), so C++17 only.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <cstdint>

#include "core/cuda/cuda_api.h"

namespace cmoe::cuda_plugin {

// Records "<prefix text>" as this thread's last error and returns `code`.
int32_t set_error(int32_t code, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

// CMOE_CUDA_OK for cudaSuccess; otherwise records the failure and returns its code. Clears the
// runtime's last-error slot so a non-sticky failure is not reported twice.
int32_t cuda_fail(cudaError_t err, const char* call, const char* file, int line);
int32_t cublas_fail(cublasStatus_t st, const char* call, const char* file, int line);

// The ABI's stream handle as a CUDA stream; null is the legacy default stream.
inline cudaStream_t to_cuda(CmoeCudaStream s) {
  return s == nullptr ? cudaStreamLegacy : reinterpret_cast<cudaStream_t>(s);
}

}  // namespace cmoe::cuda_plugin

#define CUDA_TRY(call)                                                             \
  do {                                                                             \
    const cudaError_t cmoe_err_ = (call);                                          \
    if (cmoe_err_ != cudaSuccess)                                                  \
      return ::cmoe::cuda_plugin::cuda_fail(cmoe_err_, #call, __FILE__, __LINE__); \
  } while (0)
#define CUBLAS_TRY(call)                                                            \
  do {                                                                              \
    const cublasStatus_t cmoe_st_ = (call);                                         \
    if (cmoe_st_ != CUBLAS_STATUS_SUCCESS)                                          \
      return ::cmoe::cuda_plugin::cublas_fail(cmoe_st_, #call, __FILE__, __LINE__); \
  } while (0)
