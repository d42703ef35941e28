// tokenizer_train.h — learns a byte-level BPE vocabulary from text (GPT-2 style), deterministic
// and parallel.
//
// 1. Count pre-token words (GPT-2 regex, special tokens cut out first) over fixed-size chunks of
//    the text in parallel. Chunks end only where the pre-tokenization of the whole text has a
//    boundary too, so counts equal a sequential pass exactly.
// 2. The classic incremental loop: pick the most frequent adjacent pair, ties broken by the
//    byte-wise lexicographic order of (left token, right token); merge it in every word that
//    holds it, updating pair counts only around the merge sites. Words touched by a merge are
//    processed in parallel blocks whose results are combined in word order.
// The result depends only on the texts and options — never on the thread count.
//
// Vocabulary layout: special tokens first (ids 0..S-1, so <|endoftext|> = 0 as in GPT-NeoX), then
// the 256 byte characters in code-point order (GPT-2's order), then merged tokens in merge order.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "data/tokenizer.h"

namespace cmoe {

struct TokenizerTrainOptions {
  int32_t vocab_size = 8192;  // special tokens + 256 bytes + merges
  std::vector<std::string> special_tokens = {kEndOfText};
  int64_t min_pair_count = 1;  // stop early when the best pair is rarer than this
  int num_threads = 0;         // 0: OpenMP's default
};

struct TokenizerTrainStats {
  int64_t bytes = 0;         // input bytes
  int64_t words = 0;         // pre-token words counted
  int64_t unique_words = 0;
  int32_t merges = 0;        // merges learned
  double count_seconds = 0;  // step 1
  double merge_seconds = 0;  // step 2
};

absl::StatusOr<Tokenizer> tokenizer_train(const std::vector<std::string_view>& texts,
                                          const TokenizerTrainOptions& options,
                                          TokenizerTrainStats* stats = nullptr);

// Reads each file whole and trains on the concatenation of their texts (each file a separate
// text: no word spans two files).
absl::StatusOr<Tokenizer> tokenizer_train_files(const std::vector<std::string>& paths,
                                                const TokenizerTrainOptions& options,
                                                TokenizerTrainStats* stats = nullptr);

}  // namespace cmoe
