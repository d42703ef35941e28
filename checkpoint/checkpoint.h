// checkpoint.h — crash-safe checkpoint directories: sharded save, latest pointer, verified load.
//
// A checkpoint is <root>/step_<8 digits>/ holding manifest.pb (binary Manifest ending in its own
// CRC-32C), manifest.txt (the same in text format, for people, carrying that CRC) and one or
// more data files, each written by one writer (in a parallel job: one rank) with the row slices
// it owns. <root>/latest names the newest step directory and its manifest's CRC. Saving is three
// steps so that many writers can share it:
//   checkpoint_prepare  one process: creates <root>/.tmp-step_N (leftovers of crashed saves,
//                       .tmp-step_* of any step, are removed first);
//   checkpoint_write_shard  every writer: its data file in that directory, fsynced; returns
//                       the manifest entries (name, global shape, rows, offset, CRC-32C);
//   checkpoint_commit   one process, after every writer: the manifest with all entries,
//                       fsyncs, renames the directory into place, then replaces <root>/latest
//                       atomically and deletes all but the newest keep_last step directories.
// A crash at any moment leaves the previous checkpoint as latest and loadable; a save that
// fails (a full disk) removes its staging directory (checkpoint_abort). checkpoint_save is the
// three steps for a single writer. Layout: docs/checkpoint-format.md.
//
// Reading: every reader goes through checkpoint_read_manifest (the manifest's CRC-32C, its
// version, the step against the directory name). CheckpointReader::open then checks the entries
// (file names, every file present and long enough, each entry's bytes against its shape and
// dtype, every tensor's entries tiling its rows exactly) before anything is read; read_rows()
// reads only the entries a caller's rows touch, verifying each entry's CRC-32C. Errors name the
// tensor, the file, the offset and what differs.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "checkpoint/manifest.pb.h"
#include "core/tensor.h"

namespace cmoe {

// 3: manifest.pb ends in its own CRC-32C. Versions 1 and 2 are still read; newer ones are refused.
inline constexpr uint32_t kCheckpointFormatVersion = 3;

struct NamedTensor {
  std::string name;
  Tensor tensor;  // CPU, contiguous
};

// Rows [row_begin, row_begin + data.dim(0)) of a tensor whose global shape is global_shape
// (equal to data's except in dim 0). An unsliced tensor: row_begin 0, global_shape = shape.
struct ShardTensor {
  std::string name;
  Tensor data;  // CPU, contiguous
  Shape global_shape;
  int64_t row_begin = 0;
};

// "step_00000042".
std::string checkpoint_step_name(int64_t step);

// Creates the staging directory <root>/.tmp-step_N (removing every leftover .tmp-step_* and
// .latest.tmp of crashed saves) and returns its path.
absl::StatusOr<std::string> checkpoint_prepare(const std::string& root, int64_t step);

// Writes `tensors` to <dir>/<file> (64-byte aligned, back to back), fsyncs it, and returns
// their manifest entries. Safe to call from a background thread. The bytes stream through two
// 8 MiB aligned staging buffers, one filled while a writer thread writes the other, with
// O_DIRECT when direct_io and the file system allows it (else ordinary writes). `step` only
// serves the crash test hook below.
absl::StatusOr<std::vector<checkpoint::TensorEntry>> checkpoint_write_shard(const std::string& dir,
                                                                            const std::string& file,
                                                                            const std::vector<ShardTensor>& tensors,
                                                                            int64_t step = -1, bool direct_io = true);

// A shard file's bytes in host memory, 4096-byte aligned: the snapshot an asynchronous save
// takes (one copy of each tensor, on the calling thread) and writes later (in a background
// thread, with O_DIRECT where the file system allows it, so the write costs the cores almost
// nothing). Entries' CRC-32C are computed by checkpoint_write_image.
struct ShardImage {
  std::string file;
  std::vector<checkpoint::TensorEntry> entries;
  std::shared_ptr<char> bytes;  // `capacity` bytes: size rounded up to 4096, zero-padded
  uint64_t size = 0, capacity = 0;
};
// `reuse`: a previous image whose buffer is taken over when large enough (a run's shard has the
// same size at every save, so the buffer's pages are faulted in once, not at every snapshot).
absl::StatusOr<ShardImage> checkpoint_shard_image(const std::string& file, const std::vector<ShardTensor>& tensors,
                                                  ShardImage* reuse = nullptr);
absl::StatusOr<std::vector<checkpoint::TensorEntry>> checkpoint_write_image(const std::string& dir, ShardImage& image,
                                                                            int64_t step = -1, bool direct_io = true);

// Completes a save whose writers have all returned: `meta` carries every writer's entries
// (in the order the manifest should list them).
// Writes the manifest into the staging directory, renames it to <root>/step_N, updates
// latest and applies keep_last. Returns the final directory.
absl::StatusOr<std::string> checkpoint_commit(const std::string& root, checkpoint::Manifest meta, int keep_last);

// prepare + one writer (file `file`, whole tensors) + commit.
absl::StatusOr<std::string> checkpoint_save(const std::string& root, checkpoint::Manifest meta,
                                            const std::vector<NamedTensor>& tensors, int keep_last,
                                            const std::string& file = "tensors.bin", bool direct_io = true);

// Removes the staging directory <root>/.tmp-step_N of a save that failed (a writer's error, a
// full disk), so that a failed save leaves nothing behind. Safe when there is none.
void checkpoint_abort(const std::string& root, int64_t step);

// The directory <root>/latest points to; NotFound when there is none yet. `latest` is the step
// directory's name on its first line and, as cmoe writes it, "manifest_crc32c XXXXXXXX" on the
// second: then that directory's manifest must carry that CRC (a damaged `latest` naming another,
// older checkpoint is refused, not resumed from). A one-line `latest` (older cmoe, or written by
// hand to pick a checkpoint) is accepted.
absl::StatusOr<std::string> checkpoint_latest(const std::string& root);

// manifest.pb for `meta`: sets format_version (kCheckpointFormatVersion) and manifest_crc32c in
// *meta and returns the serialized manifest followed by its CRC-32C field.
std::string checkpoint_manifest_bytes(checkpoint::Manifest* meta);
// manifest.txt for a manifest (with its manifest_crc32c): a comment line, then text format.
std::string checkpoint_manifest_text(const checkpoint::Manifest& meta);

// Parses manifest.pb bytes and checks them before anything else trusts them: not empty, a
// valid protobuf, the CRC-32C (required from format 3 on, and checked whenever present, so no
// single changed byte passes), a known format version, non-negative step, tokens and counters,
// no counter twice. `path` names the file in messages.
absl::StatusOr<checkpoint::Manifest> checkpoint_parse_manifest(std::string_view bytes, const std::string& path);
// Reads <dir>/manifest.pb (checkpoint_parse_manifest) and checks that a directory named
// step_N holds the manifest of step N. Every reader (resume, verify, inspect, export, reshard)
// goes through here.
absl::StatusOr<checkpoint::Manifest> checkpoint_read_manifest(const std::string& dir);
// Checks that <dir>/manifest.txt exists and says exactly what `m` (its manifest.pb) says.
// manifest.txt is never read to load a checkpoint; `cmoe checkpoint verify` calls this so that
// the copy people read cannot silently disagree with the manifest a resume uses.
absl::Status checkpoint_check_manifest_text(const std::string& dir, const checkpoint::Manifest& m);

// Test hook for crash safety (docs/checkpoint-format.md): when CMOE_CHECKPOINT_CRASH is
// "POINT:STEP" or "POINT:STEP:WORLD_RANK", the process kills itself with SIGKILL at POINT
// (shard_data, manifest, rename, latest) of the save of STEP (on that rank only).
void checkpoint_crash_point(const char* point, int64_t step);

class CheckpointReader {
 public:
  struct Info {
    DType dtype = DType::kF32;
    Shape shape;                // global
    std::vector<int> entries;   // manifest entry indices, by slice_begin
  };

  // Parses and checks the manifest and the files' sizes (see the header comment). direct_io:
  // stream the files in 8 MiB O_DIRECT blocks with reads ahead (where the file system allows
  // it); false reads through the page cache with kernel readahead.
  static absl::StatusOr<std::unique_ptr<CheckpointReader>> open(const std::string& dir, bool direct_io = true);
  ~CheckpointReader();

  const std::string& dir() const { return dir_; }
  const checkpoint::Manifest& manifest() const { return manifest_; }
  int64_t counter(const std::string& name, int64_t fallback = 0) const;
  // Tensor names in the order of their first entry.
  const std::vector<std::string>& names() const { return names_; }
  const Info* find(const std::string& name) const;

  // dst = rows [row_begin, row_begin + dst.dim(0)) of `name` (dst: contiguous CPU, the
  // tensor's dtype, its trailing dims). Reads and CRC-checks every entry those rows touch.
  absl::Status read_rows(const std::string& name, int64_t row_begin, const Tensor& dst);
  absl::StatusOr<Tensor> read(const std::string& name);  // the whole tensor
  // Reads every entry and checks its CRC-32C; returns the bytes verified.
  absl::StatusOr<uint64_t> verify_all();

 private:
  CheckpointReader() = default;
  absl::Status read_entry(int index, char* dst);
  struct File;
  absl::StatusOr<bool> read_direct(File& f, uint64_t offset, uint64_t n, char* dst, uint32_t* crc,
                                   const std::string& where);

  std::string dir_;
  checkpoint::Manifest manifest_;
  std::vector<std::string> names_;
  std::map<std::string, Info> info_;
  std::map<std::string, std::unique_ptr<File>> files_;
  File* streaming_ = nullptr;  // the one file holding read buffers (a reader of many shards
                               // keeps 24 MiB, not 24 MiB per file)
};

// Every tensor of a checkpoint, whole (for export and tools).
struct LoadedCheckpoint {
  std::string dir;
  checkpoint::Manifest manifest;          // tensors' entries included
  std::map<std::string, Tensor> tensors;  // verified against their CRC-32C
  int64_t counter(const std::string& name, int64_t fallback = 0) const;
};
absl::StatusOr<LoadedCheckpoint> checkpoint_load(const std::string& dir);

}  // namespace cmoe
