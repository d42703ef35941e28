// cuda_backend.h — the CUDA device abstraction: discovery, initialisation, the caching allocator.
//
// Everything here goes through the CUDA plugin (plugin_loader.h), loaded on first use: calling
// any of these functions is what "asking for a CUDA device" means. init() registers the CUDA
// caching allocator and device copies with core/allocator.h, after which Tensor::empty(...,
// cuda) works; a CUDA tensor asked for before init() triggers the same registration
// (register_backend). Every entry point returns a Status naming what failed — the plugin that
// could not be loaded and why, or the CUDA call and the driver's reason — so a machine without
// a GPU gets a clear sentence rather than a crash.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace cmoe::cuda {

class CachingAllocator;

// Number of usable GPUs; an error status with the reason when there are none (backend not
// built, plugin or CUDA library not loadable, no driver, no device).
absl::StatusOr<int> device_count();

// Selects `device`, registers the caching allocator and device copy hooks. Idempotent.
absl::Status init(int device = 0);

// Registers the caching allocator and device copy hooks without selecting a device, when at
// least one GPU is usable. Idempotent. core/allocator.cpp calls it for the first CUDA tensor.
absl::Status register_backend();

// The caching allocator init() registered for CUDA tensors (statistics, empty_cache()).
// Calling it before a successful init() is a bug (checked).
CachingAllocator& caching_allocator();

// For `cmoe info`: "2 GPU(s) (backend <path>)" and a line per GPU ("  gpu 0: NVIDIA H100 80GB
// HBM3, sm_90, 79.1 GiB"), or one line: "no GPU usable (<why>)", "not available (<why the plugin
// did not load>)" or "not built (<why>)".
std::string describe_backend();

}  // namespace cmoe::cuda
