// stream.h — RAII owner of a CUDA stream (created through the CUDA plugin).
//
// Streams are created blocking (default flags), so they synchronise with the legacy default
// stream that host<->device copies use; the caching allocator's reuse rule
// (caching_allocator.h) relies on that ordering. Move-only; destruction synchronises the stream
// before destroying it so no queued work outlives the buffers its owner is about to free.
// StreamHandle is the plugin ABI's opaque cudaStream_t; a null handle is the legacy default
// stream.
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/cuda/cuda_api.h"

namespace cmoe::cuda {

using StreamHandle = CmoeCudaStream;
// The legacy default stream (cudaStreamLegacy).
inline constexpr StreamHandle kLegacyStream = nullptr;

class Stream {
 public:
  // A new stream on the current device; loads the CUDA backend if needed.
  static absl::StatusOr<Stream> create();
  Stream(Stream&& o) noexcept : stream_(o.stream_) { o.stream_ = nullptr; }
  Stream& operator=(Stream&& o) noexcept;
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  ~Stream();

  StreamHandle get() const { return stream_; }
  // Blocks until all work queued on the stream has finished; the status names a failed kernel.
  absl::Status synchronize() const;

 private:
  explicit Stream(StreamHandle s) : stream_(s) {}
  void reset();
  StreamHandle stream_ = nullptr;
};

}  // namespace cmoe::cuda
