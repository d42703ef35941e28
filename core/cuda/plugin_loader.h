// plugin_loader.h — finding, opening and checking the CUDA backend plugin, libcmoe_cuda.so.
//
// The plugin (core/cuda/plugin/, ABI in core/cuda/cuda_api.h) is the only part of cmoe that
// links cudart, cuBLAS and NCCL. It is opened on the first request for a CUDA device — `cmoe
// info`, cuda::init, a CUDA tensor, the NCCL communicator — never at start-up, so CPU commands
// do not pay for the CUDA libraries' initialisers and run where those libraries are missing.
//
// Where: $CMOE_CUDA_PLUGIN when set, else the build's lib directory next to the executable's
// (build/bin/cmoe loads build/lib/libcmoe_cuda.so). A failure is a Status naming the file tried
// and dlerror's text, which names a missing library ("libcublasLt.so.13: cannot open shared
// object file").
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/cuda/cuda_api.h"

namespace cmoe::cuda {

inline constexpr const char* kPluginFileName = "libcmoe_cuda.so";
inline constexpr const char* kPluginPathEnv = "CMOE_CUDA_PLUGIN";

// The file the process loads the backend from: $CMOE_CUDA_PLUGIN when set and non-empty, else
// lib/libcmoe_cuda.so beside the executable's directory (/proc/self/exe: build/bin/cmoe ->
// build/lib/libcmoe_cuda.so).
std::string plugin_path();

// Opens `path` (dlopen, RTLD_LAZY | RTLD_LOCAL), looks up kCudaPluginEntry and checks the
// table: ABI version, struct size, entry-list signature, no null entry. Every error names
// `path`: Unavailable when the file or a library it needs cannot be loaded, FailedPrecondition
// when it is not a cmoe CUDA backend of this build's ABI. Not cached (the tests open fakes).
absl::StatusOr<const CmoeCudaApi*> plugin_open(const std::string& path);

// The process's backend: opened from plugin_path() on the first call; the outcome, success or
// failure, is kept. Unimplemented ("not built") when this build made no plugin and
// CMOE_CUDA_PLUGIN is unset. Thread-safe.
absl::StatusOr<const CmoeCudaApi*> plugin_api();

// The backend plugin_api() loaded, for code that only runs on CUDA tensors or handles (which
// exist only once it is loaded); calling it earlier is a bug (checked).
const CmoeCudaApi& loaded_api();

// OK for CMOE_CUDA_OK; otherwise a Status of that code carrying api.last_error()'s sentence.
absl::Status plugin_status(const CmoeCudaApi& api, int32_t code);

// For failures that can only be bugs or a broken device (a kernel launch, a copy between valid
// allocations): aborts through CMOE_CHECK with `what` and the plugin's sentence.
void plugin_check(const CmoeCudaApi& api, int32_t code, const char* what);

}  // namespace cmoe::cuda
