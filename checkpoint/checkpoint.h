// checkpoint.h — crash-safe checkpoint directories: save, find latest, load with verification.
//
// A checkpoint is <root>/step_<8 digits>/ holding manifest.pb (binary Manifest), manifest.txt
// (the same in text format, for people) and tensors.bin (raw tensor bytes at the manifest's
// offsets). It is written under <root>/.tmp-step_N, every file and the directory fsynced,
// then renamed into place; only after that is <root>/latest (one line: the directory name)
// replaced atomically. A crash at any moment leaves the previous checkpoint as latest and
// loadable. The last keep_last checkpoints are kept. Layout: docs/checkpoint-format.md.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "checkpoint/manifest.pb.h"
#include "core/tensor.h"

namespace cmoe {

struct NamedTensor {
  std::string name;
  Tensor tensor;  // CPU, contiguous
};

struct LoadedCheckpoint {
  std::string dir;
  checkpoint::Manifest manifest;        // tensors' entries included
  std::map<std::string, Tensor> tensors;  // verified against their CRC-32C
  int64_t counter(const std::string& name, int64_t fallback = 0) const;
};

// Saves `tensors` with the metadata in `meta` (its tensor list is filled here) as
// <root>/step_<meta.step>; returns the directory written.
absl::StatusOr<std::string> checkpoint_save(const std::string& root, checkpoint::Manifest meta,
                                            const std::vector<NamedTensor>& tensors, int keep_last);

// The directory <root>/latest points to; NotFound when there is none yet.
absl::StatusOr<std::string> checkpoint_latest(const std::string& root);

// Reads and verifies a checkpoint directory: manifest, file sizes and every tensor's CRC.
absl::StatusOr<LoadedCheckpoint> checkpoint_load(const std::string& dir);

}  // namespace cmoe
