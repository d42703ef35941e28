// tokenizer.h — byte-level BPE as GPT-2 and GPT-NeoX do it, loaded from and saved to Hugging
// Face `tokenizer.json` (docs/tokenizer.md, docs/data.md).
//
// Encoding pipeline (the order Hugging Face tokenizers uses, so ids match it exactly):
//   1. added tokens with normalized=false are cut out of the raw text (leftmost-longest);
//   2. each remaining piece is normalized (none or NFC), then added tokens with normalized=true
//      are cut out of it;
//   3. each remaining piece is pre-tokenized with GPT-2's regex (data/tokenizer_pretokenize.h);
//   4. each pre-token's UTF-8 bytes become one symbol per byte, and the adjacent pair with the
//      lowest merge rank is merged until no pair has a rank.
// Any byte string encodes (invalid UTF-8 bytes are ordinary bytes), and without a normalizer
// decode_bytes(encode(s)) == s for every s. With NFC, the round trip is exact for NFC text.
//
// A Tokenizer is immutable after construction and safe to use from many threads at once: the
// per-word BPE cache is thread-local. Copies are deep (and cheap enough: done once per process).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace cmoe {

inline constexpr const char* kEndOfText = "<|endoftext|>";

// A Hugging Face AddedToken: matched in the text before BPE and mapped to one id.
struct AddedToken {
  int32_t id = 0;
  std::string content;
  bool single_word = false;  // only when not touching word characters on either side
  bool lstrip = false;       // swallows whitespace on its left
  bool rstrip = false;       // swallows whitespace on its right
  bool normalized = false;   // matched on normalized text (true) or raw text (false)
  bool special = true;
  bool operator==(const AddedToken&) const = default;
};

enum class Normalizer : uint8_t { kNone, kNFC };

// Everything tokenizer.json can say that cmoe implements. The *_form fields only remember how
// the file spelled an equivalent choice, so save() writes back what load() read.
struct TokenizerSpec {
  // vocab[k] = (token in byte-level characters, id); ids are unique, need not be dense.
  std::vector<std::pair<std::string, int32_t>> vocab;
  // merges in rank order (rank = position): the two byte-level token strings.
  std::vector<std::pair<std::string, std::string>> merges;
  std::vector<AddedToken> added_tokens;
  Normalizer normalizer = Normalizer::kNone;
  bool normalizer_in_sequence = false;  // {"type":"Sequence","normalizers":[{"type":"NFC"}]}
  bool add_prefix_space = false;        // prepend ' ' to each piece not starting with one
  bool use_regex = true;                // GPT-2 regex split (false: each piece is one word)
  bool split_then_byte_level = false;   // written as Sequence[Split(regex), ByteLevel(no regex)]
  std::string split_pattern;            // that Split's regex, one of the GPT-2 spellings
  bool trim_offsets = true;             // ByteLevel option that only affects offsets
  bool merges_as_pairs = true;          // ["a","b"] (newer files) or "a b" (older)
  bool post_processor_byte_level = false;
  bool decoder_byte_level = true;
  bool operator==(const TokenizerSpec&) const = default;
};

class Tokenizer {
 public:
  // Validates a spec: every byte has its single-character token, every merge's parts and
  // result are in the vocab, ids are unique and non-negative, added tokens are non-empty.
  static absl::StatusOr<Tokenizer> create(TokenizerSpec spec);

  // tokenizer.json text -> Tokenizer. `source` names the file in messages.
  static absl::StatusOr<Tokenizer> from_json(std::string_view json_text, const std::string& source = "tokenizer.json");
  static absl::StatusOr<Tokenizer> load(const std::string& path);
  std::string to_json() const;
  absl::Status save(const std::string& path) const;  // writes path.tmp, then renames

  Tokenizer(const Tokenizer&);
  Tokenizer& operator=(const Tokenizer&);
  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  // Appends the ids of `text` (any bytes) to *ids.
  void encode(std::string_view text, std::vector<int32_t>* ids) const;
  std::vector<int32_t> encode(std::string_view text) const;

  // Exact bytes of ids; an id outside the vocabulary is an error naming its position.
  absl::StatusOr<std::string> decode_bytes(std::span<const int32_t> ids) const;
  // Text: decode_bytes with ill-formed UTF-8 replaced by U+FFFD.
  absl::StatusOr<std::string> decode(std::span<const int32_t> ids) const;

  // One more than the largest id (model vocab and added tokens).
  int32_t vocab_size() const;
  std::optional<int32_t> token_to_id(std::string_view token) const;  // added tokens first
  // The token string (byte-level characters, or an added token's content); "" for a hole.
  const std::string& id_to_token(int32_t id) const;
  bool is_special(int32_t id) const;
  std::optional<int32_t> eot_id() const { return token_to_id(kEndOfText); }
  const TokenizerSpec& spec() const;

 private:
  struct Impl;
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace cmoe
