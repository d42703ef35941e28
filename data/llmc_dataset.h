// llmc_dataset.h — llm.c token shards as training data: one shard or a glob of shards read as
// a SequenceSource, so the Megatron sample builder (gpt_dataset.h) and the loader use them
// exactly as they use a Megatron .bin/.idx dataset.
//
// Byte layout of one shard, as llm.c's dev/data writers make it (little-endian, no padding):
//   offset   type          field
//   0        int32[256]    header: [0] magic, [1] version, [2] token count n, the rest 0
//   1024     uint16[n]     tokens, GPT-2 kind   (magic 20240520, version 1)
//            uint32[n]     tokens, Llama-3 kind (magic 20240801, version 7)
// The file is exactly 1024 + n * itemsize bytes (LlmcShard in indexed_dataset.h validates it).
// There is no document index: llm.c writes every document *preceded* by a delimiter token,
// <|endoftext|> = 50256 for GPT-2 shards and <|begin_of_text|> = 128000 for Llama-3 shards.
//
// How shards become samples. The shards of a source (a path, or every file a glob matches, in
// byte order of their paths, so `fineweb_train_*.bin` reads 000001, 000002, ... as llm.c does)
// are concatenated into one token stream, which is cut into documents before every delimiter
// token and at every shard start (a document llm.c split across two shards counts as two);
// empty pieces are dropped. The documents therefore tile the stream in order, each beginning
// with its delimiter (except a shard's tokens before its first delimiter, which form a document
// of their own). These documents are the source's sequences, and from there on nothing differs
// from Megatron data: `data.split` divides them by count into train / valid / test, the seeded
// numpy shuffle orders them, a sample is a window of T+1 tokens of the shuffled document stream
// (crossing document boundaries, like llm.c's windows), and blends, data-parallel slices and
// exact resume work unchanged. In the document order itself, sample j would be tokens
// [j*T, j*T + T] of the stream: llm.c's contiguous windows. An llm.c source thus trains
// exactly like the Megatron dataset that holds the same documents (tests/data_llmc_test.py
// trains both and compares the losses).
//
// Opening a source maps every shard and scans it once for delimiters; the index keeps 8 bytes
// per document in memory. A token id outside the model's vocabulary is reported by the loader
// with the shard's path and the byte offset of the token.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "data/indexed_dataset.h"
#include "data/sequence_source.h"

namespace cmoe::data {

class LlmcDataset final : public SequenceSource {
 public:
  // Opens the shard `path`, or every shard matching it when it holds a glob character. No
  // match, a malformed shard, or shards of both kinds in one source is an error naming the file.
  static absl::StatusOr<LlmcDataset> open(const std::string& path);

  const std::string& name() const override { return name_; }
  int64_t num_sequences() const override { return static_cast<int64_t>(seq_start_.size()) - 1; }
  int64_t num_tokens() const override { return seq_start_.back(); }
  int32_t sequence_length(int64_t i) const override;
  absl::Status read(int64_t i, int64_t offset, int64_t count, int32_t* out) const override;
  std::string token_location(int64_t i, int64_t offset) const override;  // "SHARD: at byte N"

  LlmcShard::Kind kind() const { return shards_.front().kind(); }
  int32_t delimiter() const { return shards_.front().document_delimiter(); }
  const std::vector<LlmcShard>& shards() const { return shards_; }

 private:
  LlmcDataset() = default;
  // (shard index, token position inside that shard) of stream position `pos`.
  std::pair<size_t, int64_t> shard_of(int64_t pos) const;

  std::string name_;
  std::vector<LlmcShard> shards_;
  std::vector<int64_t> shard_base_;       // (K+1) stream position where shard k starts
  std::vector<int64_t> seq_start_{0};     // (S+1) stream position where sequence i starts
};

}  // namespace cmoe::data
