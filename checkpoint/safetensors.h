// safetensors.h — read and write the safetensors format (Hugging Face), so weights leave
// cmoe in a file any PyTorch user can load.
//
// Layout (all integers little-endian):
//   bytes [0, 8)        u64 N: length of the JSON header
//   bytes [8, 8 + N)    UTF-8 JSON object, padded with trailing spaces to a multiple of 8:
//                         {"__metadata__": {"key": "value", ...},            (optional)
//                          "name": {"dtype": "F32", "shape": [2, 3],
//                                   "data_offsets": [begin, end]}, ...}
//   bytes [8 + N, EOF)  the data buffer; a tensor's bytes are buffer[begin, end), row-major,
//                       little-endian. Tensors tile the buffer exactly: no gaps, no overlap.
// dtypes: F32, BF16, I32, I64, U16 (cmoe's DTypes). The reader validates everything — header
// size, JSON syntax, duplicate names, dtype names, shapes, offsets against byte counts and the
// exact tiling of the buffer — and reports the file, the tensor and what is wrong.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "checkpoint/checkpoint.h"
#include "core/tensor.h"

namespace cmoe {

inline constexpr uint64_t kSafetensorsMaxHeader = 100u << 20;  // the reference library's limit

struct SafetensorsFile {
  std::map<std::string, std::string> metadata;  // "__metadata__"
  std::vector<NamedTensor> tensors;             // in data-offset order
};

// Writes `tensors` (any device; distinct non-empty names) in the order given, streaming each
// tensor's bytes after the header. Atomic: a temporary file is written, fsynced and renamed.
absl::Status safetensors_write(const std::string& path, const std::vector<NamedTensor>& tensors,
                               const std::map<std::string, std::string>& metadata = {});
// Reads and validates a whole file; tensors are read straight into CPU tensors.
absl::StatusOr<SafetensorsFile> safetensors_read(const std::string& path);

}  // namespace cmoe
