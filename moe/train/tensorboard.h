// tensorboard.h — TensorBoard event files written natively, so a run directory opens in
// TensorBoard (`tensorboard --logdir runs/`) without any Python on the training machine.
//
// File: DIR/events.out.tfevents.<unix seconds>.<host>.<pid>, a sequence of TFRecord records,
// each (little-endian)
//     u64 length | u32 masked_crc32c(length's 8 bytes) | data[length] | u32 masked_crc32c(data)
//     masked_crc32c(x) = ((c >> 15) | (c << 17)) + 0xa282ead8,  c = CRC-32C(x)  (mod 2^32)
// whose data is a serialized Event (moe/train/tensorboard.proto): first one with file_version
// "brain.Event:2", then one per summary (wall time, step, scalar / histogram / image values).
#pragma once

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "moe/train/tensorboard.pb.h"

namespace cmoe {

// ((c >> 15) | (c << 17)) + 0xa282ead8 of c = CRC-32C(data[0, n)).
uint32_t tfrecord_masked_crc(const void* data, size_t n);

// One TFRecord: the framing above around `data`.
std::string tfrecord_frame(const std::string& data);

class TensorBoardWriter {
 public:
  // Creates a new event file in dir (which must exist) and writes its file_version event.
  static absl::StatusOr<std::unique_ptr<TensorBoardWriter>> open(const std::string& dir);
  ~TensorBoardWriter();
  TensorBoardWriter(const TensorBoardWriter&) = delete;
  TensorBoardWriter& operator=(const TensorBoardWriter&) = delete;

  // Appends one Event holding `summary` at `step` (wall time = now). Buffered; flush() writes.
  absl::Status write(int64_t step, const tensorboard::Summary& summary);
  absl::Status flush();
  const std::string& path() const { return path_; }

 private:
  TensorBoardWriter() = default;
  absl::Status append(const tensorboard::Event& e);
  std::string path_;
  std::FILE* f_ = nullptr;
};

// Summary builders.
void summary_add_scalar(tensorboard::Summary* s, const std::string& tag, double value);
// A histogram of integer-valued samples: counts[i] samples of value i (i = 0 .. n-1), one bucket
// per value (limits i + 0.5). For a router's load: the expert id of every routed pair.
void summary_add_index_histogram(tensorboard::Summary* s, const std::string& tag, const std::vector<int64_t>& counts);
// An RGB PNG image.
void summary_add_png(tensorboard::Summary* s, const std::string& tag, const std::string& png, int width, int height);

}  // namespace cmoe
