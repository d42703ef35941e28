// gpt_dataset.h — Megatron-compatible GPT training samples over a SequenceSource (a Megatron
// IndexedDataset, or llm.c shards read as documents: data/llmc_dataset.h).
//
// For the same prefix, split, sequence length, sample count and seed, GptDataset yields exactly
// the sample order and tokens of megatron/core/datasets/gpt_dataset.py (with its defaults:
// add_extra_token_to_sequence, drop the last partial sequence), so a cmoe run can be compared
// with a Megatron run sample for sample. The recipe (docs/data.md):
//   1. the split's sequence ids are a contiguous range from --split weights (split_ranges);
//   2. E = smallest epoch count with E * tokens_per_epoch >= N*T + 1;
//   3. document_index = the split's ids repeated E times, shuffled by numpy's
//      RandomState(seed).shuffle (the last epoch shuffled separately when it is needed for
//      fewer than 80% of its samples);
//   4. sample j = the T+1 tokens from stream position j*T of the concatenated document_index
//      sequences (consecutive samples share one token);
//   5. shuffle_index = 0 .. num_samples-1 shuffled by the same stream (split the same way);
//      the k-th sample consumed is sample shuffle_index[k].
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "data/sequence_source.h"

namespace cmoe::data {

// numpy.random.RandomState(seed) for an integer seed: MT19937 seeded by init_genrand(seed),
// which is exactly std::mt19937(seed). Only the draws Megatron uses are reproduced.
class NumpyRandomState {
 public:
  explicit NumpyRandomState(uint32_t seed) : gen_(seed) {}
  uint32_t next_u32() { return static_cast<uint32_t>(gen_()); }
  // numpy's mt19937_next64: the first 32-bit draw is the high half.
  uint64_t next_u64() {
    const uint64_t hi = next_u32();
    return (hi << 32) | next_u32();
  }
  // numpy's random_interval(max): a uniform integer in [0, max] by masked rejection: mask =
  // smallest 2^k-1 >= max; draw (32-bit while max fits 32 bits, else 64-bit) & mask until <= max.
  uint64_t interval(uint64_t max);
  // RandomState.shuffle on a 1-D array: for i = n-1 down to 1, swap a[i] and a[interval(i)].
  template <typename T>
  void shuffle(std::span<T> a) {
    for (size_t i = a.size() > 0 ? a.size() - 1 : 0; i >= 1; --i) {
      const size_t j = static_cast<size_t>(interval(i));
      std::swap(a[i], a[j]);
    }
  }

 private:
  std::mt19937 gen_;
};

enum class Split { kTrain = 0, kValid = 1, kTest = 2 };
// "train", "valid" (also "validation", "val") or "test".
absl::StatusOr<Split> split_from_name(const std::string& name);
const char* split_name(Split s);

// Contiguous sequence ids [begin, end) of one split.
struct SplitRange {
  int64_t begin = 0;
  int64_t end = 0;
  int64_t size() const { return end - begin; }
};

// Megatron's --split rule: weights "969,30,1" (missing ones are 0) are normalised to sum 1 in
// float64, accumulated into bookends [0, w0, w0+w1, w0+w1+w2], and split i is
// [round(b_i * n), round(b_{i+1} * n)) with Python's round (half to even); a split whose bookends
// are equal is absent (nullopt).
// Errors name the string as `--split` (cmoe data samples' flag).
absl::StatusOr<std::array<std::optional<SplitRange>, 3>> split_ranges(const std::string& split, int64_t num_sequences);
// Checks a split string's syntax, its errors naming it as `what` (the loader: "data.split").
absl::Status split_check(const std::string& split, const std::string& what);

struct GptDatasetConfig {
  int64_t seq_length = 0;   // T, > 1 (Megatron asserts it)
  int64_t num_samples = 0;  // N requested, >= 1
  uint32_t seed = 1234;     // Megatron's default --seed
};

class GptDataset {
 public:
  // Builds the three indices for sequence ids `range` of `ds`.
  static absl::StatusOr<GptDataset> build(std::shared_ptr<const SequenceSource> ds, SplitRange range,
                                          const GptDatasetConfig& cfg);

  int64_t size() const { return static_cast<int64_t>(shuffle_index_.size()); }  // all samples of E epochs
  int64_t seq_length() const { return cfg_.seq_length; }
  int64_t num_epochs() const { return num_epochs_; }
  int64_t tokens_per_epoch() const { return tokens_per_epoch_; }
  bool separate_final_epoch() const { return separate_final_epoch_; }
  const SequenceSource& source() const { return *ds_; }

  const std::vector<int32_t>& document_index() const { return document_index_; }  // (E * split size)
  // (size()+1, 2) row-major: [doc_index position, token offset] where sample j starts.
  const std::vector<int64_t>& sample_index() const { return sample_index_; }
  const std::vector<int64_t>& shuffle_index() const { return shuffle_index_; }  // (size())

  // out (seq_length+1) = tokens of the k-th consumed sample (sample shuffle_index[k]).
  absl::Status sample(int64_t k, std::span<int32_t> out) const;
  // out (seq_length+1) = tokens of unshuffled sample j.
  absl::Status sample_unshuffled(int64_t j, std::span<int32_t> out) const;
  // Where token p (in [0, seq_length]) of the k-th consumed sample is stored: "FILE: at byte N".
  std::string token_location(int64_t k, int64_t p) const;

 private:
  GptDataset() = default;
  std::shared_ptr<const SequenceSource> ds_;
  GptDatasetConfig cfg_;
  int64_t num_epochs_ = 0;
  int64_t tokens_per_epoch_ = 0;
  bool separate_final_epoch_ = false;
  std::vector<int32_t> document_index_;
  std::vector<int64_t> sample_index_;
  std::vector<int64_t> shuffle_index_;
};

}  // namespace cmoe::data
