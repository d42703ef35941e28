// stream.h — RAII owner of a CUDA stream.
//
// Streams are created blocking (default flags), so they synchronise with the legacy default
// stream that cudaMemcpy uses for host<->device copies; the caching allocator's reuse rule
// (caching_allocator.h) relies on that ordering. Move-only; destruction synchronises the stream
// before destroying it so no queued work outlives the buffers its owner is about to free.
#pragma once

#include <cuda_runtime_api.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace cmoe::cuda {

class Stream {
 public:
  // A new stream on the current device.
  static absl::StatusOr<Stream> create();
  Stream(Stream&& o) noexcept : stream_(o.stream_) { o.stream_ = nullptr; }
  Stream& operator=(Stream&& o) noexcept;
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  ~Stream();

  cudaStream_t get() const { return stream_; }
  // Blocks until all work queued on the stream has finished; the status names a failed kernel.
  absl::Status synchronize() const;

 private:
  explicit Stream(cudaStream_t s) : stream_(s) {}
  void reset();
  cudaStream_t stream_ = nullptr;
};

}  // namespace cmoe::cuda
