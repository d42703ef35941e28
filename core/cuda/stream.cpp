// stream.cpp — Stream: creation, synchronisation and destruction of a CUDA stream.
#include "core/cuda/stream.h"

#include <cstdio>
#include <string>

#include "core/cuda/cuda_check.h"

namespace cmoe::cuda {

absl::StatusOr<Stream> Stream::create() {
  cudaStream_t s = nullptr;
  CMOE_RETURN_IF_ERROR(CUDA_CHECK(cudaStreamCreate(&s)));
  return Stream(s);
}

Stream& Stream::operator=(Stream&& o) noexcept {
  if (this != &o) {
    reset();
    stream_ = o.stream_;
    o.stream_ = nullptr;
  }
  return *this;
}

Stream::~Stream() { reset(); }

void Stream::reset() {
  if (stream_ == nullptr) return;
  // A destructor cannot return a Status: report a failure (an earlier kernel fault) and go on.
  absl::Status st = CUDA_CHECK(cudaStreamSynchronize(stream_));
  if (st.ok()) st = CUDA_CHECK(cudaStreamDestroy(stream_));
  if (!st.ok()) std::fprintf(stderr, "cmoe: %s\n", std::string(st.message()).c_str());
  stream_ = nullptr;
}

absl::Status Stream::synchronize() const { return CUDA_CHECK(cudaStreamSynchronize(stream_)); }

}  // namespace cmoe::cuda
