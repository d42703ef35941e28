// cuda_backend.h — the CUDA device abstraction: discovery, initialisation, streams.
//
// Linked only when CMake finds nvcc (target cmoe_cuda). init() registers the CUDA caching
// allocator and device copies with core/allocator.h, after which Tensor::empty(..., cuda)
// works. Every entry point returns a Status naming the CUDA call that failed, so a machine
// without a GPU gets a clear reason rather than a crash.
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace cmoe::cuda {

class CachingAllocator;

// Number of usable GPUs; an error status with the driver's reason when there are none.
absl::StatusOr<int> device_count();

// Selects `device`, registers the caching allocator and device copy hooks. Idempotent.
absl::Status init(int device = 0);

// The caching allocator init() registered for CUDA tensors (statistics, empty_cache()).
// Calling it before a successful init() is a bug (checked).
CachingAllocator& caching_allocator();

}  // namespace cmoe::cuda
