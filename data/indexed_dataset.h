// indexed_dataset.h — Megatron's MMIDIDX indexed dataset (P.bin + P.idx): reader, writer, and
// llm.c token shards.
//
// These are the formats the tokenized Pile (Pythia's release) and llm.c ship in; cmoe must read
// what Megatron's builder writes and write what Megatron's reader loads. The byte layout of the
// .idx file (docs/formats.md §1; everything little-endian, packed, no alignment padding):
//
//   offset      type        field
//   0           9 bytes     magic "MMIDIDX\0\0"
//   9           u64         version, must be 1
//   17          u8          dtype code of the .bin tokens: 1 u8, 2 i8, 3 i16, 4 i32, 5 i64, 8 u16
//   18          u64         S = number of sequences
//   26          u64         D1 = document index length = documents + 1
//   34          int32[S]    sequence lengths (elements)
//   34+4S       int64[S]    sequence pointers (byte offset of each sequence in .bin)
//   34+12S      int64[D1]   document index: 0 ... S, non-decreasing
//
// The file is exactly 34 + 12*S + 8*D1 bytes; the .bin exactly the sequences' bytes, back to back
// from byte 0 in pointer order (index_parse checks both). Offset 34 is not 8-aligned, so every field is
// loaded with memcpy. The .bin is the sequences' elements concatenated, no header. Codes 6 and 7
// mean different float types in different forks and are never token data: they are rejected.
// The older TNTIDX format is detected and rejected with a message that says so.
//
// llm.c shards (formats.md §2): 256 x int32 header [magic, version, n, 0...], then n tokens;
// GPT-2 kind (20240520, version 1, uint16) and Llama-3 kind (20240801, version 7, uint32).
// data/llmc_dataset.h turns shards into training sequences.
//
// Every malformed input is an absl::Status naming the file, the byte offset, what was found and
// what was expected; nothing in here aborts on bad data.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "data/sequence_source.h"

namespace cmoe::data {

// Token element types of a .bin, by their .idx dtype code.
enum class TokenDType : uint8_t { kU8 = 1, kI8 = 2, kI16 = 3, kI32 = 4, kI64 = 5, kU16 = 8 };

size_t token_dtype_size(TokenDType t);
const char* token_dtype_name(TokenDType t);  // "uint16", "int32", ...
// What Megatron's preprocessing picks: uint16 when vocab_size < 65500, else int32.
TokenDType token_dtype_for_vocab(int64_t vocab_size);

inline constexpr char kIdxMagic[9] = {'M', 'M', 'I', 'D', 'I', 'D', 'X', '\0', '\0'};
inline constexpr uint64_t kIdxVersion = 1;
inline constexpr size_t kIdxHeaderBytes = 34;

// A read-only memory map of a whole file (RAII; move-only). An empty file maps to size 0.
class MappedFile {
 public:
  MappedFile() = default;
  static absl::StatusOr<MappedFile> open(const std::string& path);
  MappedFile(MappedFile&& o) noexcept;
  MappedFile& operator=(MappedFile&& o) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile();

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  void reset();
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  std::string path_;
};

// Where the arrays of a validated .idx lie (byte offsets into the .idx bytes).
struct IndexLayout {
  TokenDType dtype = TokenDType::kU16;
  int64_t num_sequences = 0;        // S
  int64_t doc_index_length = 0;     // D1
  size_t lengths_offset = 0;        // int32[S]
  size_t pointers_offset = 0;       // int64[S]
  size_t doc_index_offset = 0;      // int64[D1]
  int64_t num_tokens = 0;           // sum of the lengths
};

// Validates the bytes of a .idx against a .bin of `bin_size` bytes, in one pass over the arrays
// (the .bin's contents are not read): magic, version, a token dtype code, the exact file size;
// lengths >= 0; pointers inside the .bin, multiples of the token size and contiguous from byte 0
// (each sequence starts where the previous one ends, as every writer lays them out), the last
// sequence ending at the .bin's end; the document index non-decreasing from 0 to S. Zero-length
// sequences and empty documents are legal. Each error names the check, the index and the numbers.
// `idx_name` and `bin_name` are used in messages only. Used by IndexedDataset::open and by the
// fuzz target (which feeds it arbitrary bytes).
absl::StatusOr<IndexLayout> index_parse(const uint8_t* idx, size_t idx_size, size_t bin_size,
                                        const std::string& idx_name, const std::string& bin_name);

// A memory-mapped Megatron dataset. Accessors load unaligned fields with memcpy. Copying is
// disabled (it owns the maps); move it or share it through a shared_ptr.
class IndexedDataset final : public SequenceSource {
 public:
  // Opens PREFIX.idx and PREFIX.bin and validates them (index_parse).
  static absl::StatusOr<IndexedDataset> open(const std::string& prefix);
  IndexedDataset(IndexedDataset&&) = default;
  IndexedDataset& operator=(IndexedDataset&&) = default;

  const std::string& prefix() const { return prefix_; }
  const std::string& name() const override { return prefix_; }
  const std::string& idx_path() const { return idx_.path(); }
  const std::string& bin_path() const { return bin_.path(); }
  TokenDType dtype() const { return layout_.dtype; }
  int64_t num_sequences() const override { return layout_.num_sequences; }
  int64_t num_documents() const { return layout_.doc_index_length - 1; }
  int64_t num_tokens() const override { return layout_.num_tokens; }
  size_t bin_size() const { return bin_.size(); }

  int32_t sequence_length(int64_t i) const override;  // i in [0, S)
  int64_t sequence_pointer(int64_t i) const;   // byte offset in .bin
  int64_t document_index(int64_t j) const;     // j in [0, D1)
  std::vector<int32_t> sequence_lengths() const;  // (S) copy

  // out[0..count) = tokens [offset, offset+count) of sequence i, widened/narrowed to int32.
  // Returns an error if the range is outside the sequence or a value does not fit in int32
  // (int64 data) or is negative (when vocab checks are wanted, use check_vocab).
  absl::Status read(int64_t i, int64_t offset, int64_t count, int32_t* out) const override;
  std::string token_location(int64_t i, int64_t offset) const override;  // "P.bin: at byte N"
  // Scans every token: each must lie in [0, vocab_size). Names the first bad one's offset.
  absl::Status check_vocab(int64_t vocab_size) const;

 private:
  IndexedDataset() = default;
  std::string prefix_;
  MappedFile idx_, bin_;
  IndexLayout layout_;
};

// Writes PREFIX.bin/.idx the way Megatron's IndexedDatasetBuilder does. Output goes to
// PREFIX.bin.partial / PREFIX.idx.partial, renamed to the final names only by finish(); a
// writer destroyed before finish() removes its partial files, so a final name never holds a
// partial file. Move-only.
class IndexedDatasetWriter {
 public:
  static absl::StatusOr<IndexedDatasetWriter> create(const std::string& prefix, TokenDType dtype);
  IndexedDatasetWriter(IndexedDatasetWriter&& o) noexcept;
  IndexedDatasetWriter& operator=(IndexedDatasetWriter&&) = delete;
  IndexedDatasetWriter(const IndexedDatasetWriter&) = delete;
  ~IndexedDatasetWriter();

  // Appends one sequence; every id must fit the dtype.
  absl::Status add_sequence(std::span<const int32_t> tokens);
  // Closes the current document (its sequences are those added since the last end_document).
  void end_document();
  // add_sequence + end_document: one document of one sequence (the Pile case).
  absl::Status add_document(std::span<const int32_t> tokens);
  // Writes the .idx, flushes both files and renames them into place (.bin first, then .idx).
  absl::Status finish();

  int64_t num_sequences() const { return static_cast<int64_t>(lengths_.size()); }
  int64_t num_tokens() const { return num_tokens_; }

 private:
  IndexedDatasetWriter() = default;
  std::string prefix_;
  TokenDType dtype_ = TokenDType::kU16;
  std::FILE* bin_ = nullptr;
  std::vector<int32_t> lengths_;
  std::vector<int64_t> doc_index_{0};
  int64_t num_tokens_ = 0;
  bool finished_ = false;
  std::vector<uint8_t> buf_;
};

// An llm.c token shard, memory-mapped.
class LlmcShard {
 public:
  enum class Kind { kGpt2, kLlama3 };
  static constexpr int32_t kGpt2Magic = 20240520;
  static constexpr int32_t kLlama3Magic = 20240801;
  static constexpr size_t kHeaderBytes = 256 * 4;

  static absl::StatusOr<LlmcShard> open(const std::string& path);
  Kind kind() const { return kind_; }
  int32_t version() const { return version_; }
  int64_t num_tokens() const { return num_tokens_; }
  const std::string& path() const { return file_.path(); }
  // The token every document starts with: GPT-2 <|endoftext|> 50256, Llama-3
  // <|begin_of_text|> 128000.
  int32_t document_delimiter() const { return kind_ == Kind::kGpt2 ? 50256 : 128000; }
  // out[0..count) = tokens [offset, offset+count); uint32 values above INT32_MAX are an error.
  absl::Status read(int64_t offset, int64_t count, int32_t* out) const;

 private:
  MappedFile file_;
  Kind kind_ = Kind::kGpt2;
  int32_t version_ = 0;
  int64_t num_tokens_ = 0;
};

}  // namespace cmoe::data
