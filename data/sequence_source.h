// sequence_source.h — what the GPT sample builder reads: numbered token sequences. Two formats
// provide them, so Megatron's sample order, splits, blends and exact resume apply to both:
//   - a Megatron MMIDIDX dataset (IndexedDataset, PREFIX.bin + PREFIX.idx): its sequences;
//   - llm.c token shards (LlmcDataset, one FILE.bin or a glob of them): the documents of the
//     shards' token stream, cut before each end-of-text token (data/llmc_dataset.h).
// A data path names one or the other by its shape (open_sequence_source): a path holding a glob
// character (`*`, `?`, `[`), or ending in `.bin` with no PATH.idx beside it, is llm.c shards;
// anything else is a Megatron prefix.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace cmoe::data {

class SequenceSource {
 public:
  virtual ~SequenceSource() = default;
  // The path the source was opened from (a prefix, a shard or a glob), for messages.
  virtual const std::string& name() const = 0;
  virtual int64_t num_sequences() const = 0;
  virtual int64_t num_tokens() const = 0;
  virtual int32_t sequence_length(int64_t i) const = 0;  // i in [0, num_sequences)
  // out[0..count) = tokens [offset, offset+count) of sequence i as int32; a range outside the
  // sequence, or a stored value that does not fit int32, is an error.
  virtual absl::Status read(int64_t i, int64_t offset, int64_t count, int32_t* out) const = 0;
  // "FILE: at byte N" — where token `offset` of sequence i is stored, for error messages.
  virtual std::string token_location(int64_t i, int64_t offset) const = 0;
};

// True when `path` names llm.c shards rather than a Megatron prefix (the rule above).
bool is_llmc_path(const std::string& path);

// Opens `path` as llm.c shards or as a Megatron prefix (is_llmc_path) and validates it.
absl::StatusOr<std::shared_ptr<const SequenceSource>> open_sequence_source(const std::string& path);

}  // namespace cmoe::data
