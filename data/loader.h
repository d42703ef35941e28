// loader.h — the training data loader: Megatron-compatible samples from a weighted blend of
// datasets, each data-parallel rank's micro-batches, prefetched on a background thread.
//
// Global order. The run consumes global samples k = 0, 1, ..., N-1. With one dataset, sample k
// is GptDataset::sample(k) (Megatron's order). With several, Megatron's blending rule picks the
// dataset for each k: the one whose weight * max(k, 1) - count_so_far is largest (first on ties),
// and takes that dataset's next sample. Neither depends on the number of ranks.
//
// Ranks. Global samples come in blocks of micro_batch * dp_size; rank r's micro-batch is the
// r-th run of micro_batch samples of each block, so the ranks' batches are disjoint and together
// are exactly the block.
//
// State. LoaderState is one integer, the number of global samples consumed by all ranks
// (blocks returned so far * micro_batch * dp_size). Opening a loader at a saved state yields
// exactly the micro-batches the uninterrupted run would have yielded next; the state may be
// resumed with a different dp_size as long as it is a multiple of the new block size.
//
// Prefetch. A background thread fills a bounded queue of ready micro-batches; an error (I/O,
// a token outside the vocabulary) travels through the queue as a Status and ends the thread.
// The destructor stops and joins it.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "core/tensor.h"
#include "data/gpt_dataset.h"

namespace cmoe::data {

struct LoaderSource {
  // Megatron dataset prefix (PREFIX.bin / PREFIX.idx), or llm.c shards: a FILE.bin or a glob
  // (data/sequence_source.h says which; data/llmc_dataset.h how shards become sequences).
  std::string prefix;
  double weight = 1.0;  // blend weight (normalised over the sources)
};

struct LoaderConfig {
  std::vector<LoaderSource> sources;
  std::string split = "969,30,1";
  Split split_name = Split::kTrain;
  int64_t seq_length = 0;   // T
  int64_t micro_batch = 1;  // B, samples per rank per micro-batch
  int dp_size = 1;
  int dp_rank = 0;
  int64_t num_samples = 0;  // N, global samples the run consumes (iterations * global batch)
  uint32_t seed = 1234;
  int prefetch = 4;         // micro-batches prepared ahead
  int64_t vocab_size = 0;   // > 0: every token is checked to lie in [0, vocab_size)
};

struct LoaderState {
  int64_t consumed_samples = 0;  // global samples consumed by all ranks
};

struct MicroBatch {
  Tensor tokens;   // (B, T) i32: sample tokens [0, T)
  Tensor targets;  // (B, T) i32: sample tokens [1, T]
  int64_t first_sample = 0;  // global index of row 0
};

// The global sample sequence of a (possibly blended) set of GPT datasets.
class BlendedSamples {
 public:
  static absl::StatusOr<BlendedSamples> build(const LoaderConfig& cfg);
  int64_t size() const { return num_samples_; }
  int64_t seq_length() const { return seq_length_; }
  // out (T+1) = tokens of global sample k; checks the vocabulary when vocab_size > 0.
  absl::Status sample(int64_t k, std::span<int32_t> out) const;
  // Which source global sample k comes from, and that source's consumption index.
  int dataset_of(int64_t k) const { return datasets_.size() == 1 ? 0 : dataset_index_[k]; }
  int64_t dataset_sample_of(int64_t k) const { return datasets_.size() == 1 ? k : dataset_sample_index_[k]; }
  const GptDataset& dataset(int i) const { return datasets_[i]; }
  int num_datasets() const { return static_cast<int>(datasets_.size()); }

 private:
  int64_t num_samples_ = 0;
  int64_t seq_length_ = 0;
  int64_t vocab_size_ = 0;
  std::vector<GptDataset> datasets_;
  std::vector<int16_t> dataset_index_;         // (N) when blending
  std::vector<int64_t> dataset_sample_index_;  // (N) when blending
};

// Megatron's build_blending_indices: for k in [0, size), the dataset with the largest
// weights[i] * max(k, 1) - counts[i] (lowest index on ties) and its running count.
void blending_indices(std::span<const double> weights, int64_t size, std::vector<int16_t>* dataset_index,
                      std::vector<int64_t>* dataset_sample_index);

class Loader {
 public:
  static absl::StatusOr<std::unique_ptr<Loader>> open(const LoaderConfig& cfg, LoaderState state = {});
  ~Loader();
  Loader(const Loader&) = delete;
  Loader& operator=(const Loader&) = delete;

  // This rank's next micro-batch; OutOfRange once the N samples are used up, or the first
  // error the prefetch thread met.
  absl::StatusOr<MicroBatch> next();
  // State after the micro-batches returned so far (what a checkpoint saves).
  LoaderState state() const;
  const BlendedSamples& samples() const { return *samples_; }
  int64_t block_size() const { return cfg_.micro_batch * cfg_.dp_size; }

 private:
  Loader() = default;
  void produce();
  absl::StatusOr<MicroBatch> make_batch(int64_t block_start) const;

  LoaderConfig cfg_;
  std::shared_ptr<const BlendedSamples> samples_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<absl::StatusOr<MicroBatch>> queue_;  // guarded by mu_
  bool stop_ = false;                             // guarded by mu_
  int64_t consumed_ = 0;                          // guarded by mu_
  std::thread thread_;
};

}  // namespace cmoe::data
