// stream.cpp — Stream: creation, synchronisation and destruction of a CUDA stream.
#include "core/cuda/stream.h"

#include <cstdio>
#include <string>

#include "core/check.h"
#include "core/cuda/plugin_loader.h"

namespace cmoe::cuda {

absl::StatusOr<Stream> Stream::create() {
  CMOE_ASSIGN_OR_RETURN(const CmoeCudaApi* api, plugin_api());
  StreamHandle s = nullptr;
  CMOE_RETURN_IF_ERROR(plugin_status(*api, api->stream_create(&s, /*non_blocking=*/0)));
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
  const CmoeCudaApi& api = loaded_api();
  absl::Status st = plugin_status(api, api.stream_synchronize(stream_));
  if (st.ok()) st = plugin_status(api, api.stream_destroy(stream_));
  if (!st.ok()) std::fprintf(stderr, "cmoe: %s\n", std::string(st.message()).c_str());
  stream_ = nullptr;
}

absl::Status Stream::synchronize() const {
  const CmoeCudaApi& api = loaded_api();
  return plugin_status(api, api.stream_synchronize(stream_));
}

}  // namespace cmoe::cuda
