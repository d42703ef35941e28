// loader.cpp — see loader.h.
#include "data/loader.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "core/check.h"

namespace cmoe::data {

void blending_indices(std::span<const double> weights, int64_t size, std::vector<int16_t>* dataset_index,
                      std::vector<int64_t>* dataset_sample_index) {
  const size_t n = weights.size();
  CMOE_CHECK(n >= 1 && n <= 32767, n, " datasets");
  std::vector<int64_t> counts(n, 0);
  dataset_index->resize(static_cast<size_t>(size));
  dataset_sample_index->resize(static_cast<size_t>(size));
  for (int64_t k = 0; k < size; ++k) {
    const double kd = std::max(static_cast<double>(k), 1.0);
    size_t best = 0;
    double best_err = weights[0] * kd - static_cast<double>(counts[0]);
    for (size_t i = 1; i < n; ++i) {
      const double err = weights[i] * kd - static_cast<double>(counts[i]);
      if (err > best_err) best_err = err, best = i;
    }
    (*dataset_index)[k] = static_cast<int16_t>(best);
    (*dataset_sample_index)[k] = counts[best]++;
  }
}

absl::StatusOr<BlendedSamples> BlendedSamples::build(const LoaderConfig& cfg) {
  if (cfg.sources.empty()) return absl::InvalidArgumentError("the loader needs at least one dataset");
  if (cfg.num_samples < 1) return absl::InvalidArgumentError(absl::StrCat("num_samples ", cfg.num_samples, " < 1"));
  CMOE_RETURN_IF_ERROR(split_check(cfg.split, "data.split"));  // named as the config key, not the --split flag
  BlendedSamples b;
  b.num_samples_ = cfg.num_samples;
  b.seq_length_ = cfg.seq_length;
  b.vocab_size_ = cfg.vocab_size;
  const size_t n = cfg.sources.size();
  // Megatron normalises the blend weights, then asks dataset i for
  // ceil(ceil(N * w_i) * (1 + surplus)) samples, surplus 0.005.
  std::vector<double> w(n);
  double sum = 0;
  for (size_t i = 0; i < n; ++i) {
    if (!(cfg.sources[i].weight > 0) || !std::isfinite(cfg.sources[i].weight)) {
      return absl::InvalidArgumentError(absl::StrCat(cfg.sources[i].prefix, ": blend weight ", cfg.sources[i].weight,
                                                     " must be a positive number"));
    }
    sum += cfg.sources[i].weight;
  }
  for (size_t i = 0; i < n; ++i) w[i] = cfg.sources[i].weight / sum;
  for (size_t i = 0; i < n; ++i) {
    CMOE_ASSIGN_OR_RETURN(std::shared_ptr<const SequenceSource> shared, open_sequence_source(cfg.sources[i].prefix));
    CMOE_ASSIGN_OR_RETURN(auto ranges, split_ranges(cfg.split, shared->num_sequences()));
    const auto& range = ranges[static_cast<int>(cfg.split_name)];
    if (!range.has_value() || range->size() == 0) {
      return absl::InvalidArgumentError(absl::StrCat(cfg.sources[i].prefix, ": split '", cfg.split, "' gives the ",
                                                     split_name(cfg.split_name), " split no sequences (of ",
                                                     shared->num_sequences(), ")"));
    }
    GptDatasetConfig gc;
    gc.seq_length = cfg.seq_length;
    gc.seed = cfg.seed;
    gc.num_samples = n == 1 ? cfg.num_samples
                            : static_cast<int64_t>(std::ceil(
                                  std::ceil(static_cast<double>(cfg.num_samples) * w[i]) * (1 + 0.005)));
    CMOE_ASSIGN_OR_RETURN(GptDataset g, GptDataset::build(shared, *range, gc));
    b.datasets_.push_back(std::move(g));
  }
  if (n > 1) {
    blending_indices(w, cfg.num_samples, &b.dataset_index_, &b.dataset_sample_index_);
    std::vector<int64_t> need(n, 0);
    for (int64_t k = 0; k < cfg.num_samples; ++k) need[b.dataset_index_[k]] = b.dataset_sample_index_[k] + 1;
    for (size_t i = 0; i < n; ++i) {
      CMOE_CHECK(need[i] <= b.datasets_[i].size(), cfg.sources[i].prefix, ": blend needs ", need[i],
                 " samples, the dataset built ", b.datasets_[i].size());
    }
  }
  return b;
}

absl::Status BlendedSamples::sample(int64_t k, std::span<int32_t> out) const {
  CMOE_CHECK(k >= 0 && k < num_samples_, "global sample ", k, " of ", num_samples_);
  const int d = dataset_of(k);
  const GptDataset& g = datasets_[d];
  CMOE_RETURN_IF_ERROR(g.sample(dataset_sample_of(k), out));
  if (vocab_size_ > 0) {
    for (size_t p = 0; p < out.size(); ++p) {
      if (out[p] < 0 || out[p] >= vocab_size_) {
        return absl::DataLossError(absl::StrCat(g.token_location(dataset_sample_of(k), static_cast<int64_t>(p)),
                                                ": global sample ", k, " (dataset sample ", dataset_sample_of(k),
                                                "), position ", p, ": found token id ", out[p],
                                                ", expected an id in [0, ", vocab_size_, ") (model.vocab_size)"));
      }
    }
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------
// Loader

absl::StatusOr<std::unique_ptr<Loader>> Loader::open(const LoaderConfig& cfg, LoaderState state) {
  if (cfg.micro_batch < 1 || cfg.dp_size < 1 || cfg.dp_rank < 0 || cfg.dp_rank >= cfg.dp_size || cfg.prefetch < 1) {
    return absl::InvalidArgumentError(absl::StrCat("loader: micro_batch ", cfg.micro_batch, ", dp rank ", cfg.dp_rank,
                                                   " of ", cfg.dp_size, ", prefetch ", cfg.prefetch,
                                                   ": need micro_batch >= 1, 0 <= rank < dp_size, prefetch >= 1"));
  }
  const int64_t block = cfg.micro_batch * cfg.dp_size;
  if (state.consumed_samples < 0 || state.consumed_samples % block != 0) {
    return absl::InvalidArgumentError(absl::StrCat("loader: resume state of ", state.consumed_samples,
                                                   " consumed samples is not a multiple of micro_batch * dp_size = ",
                                                   block));
  }
  CMOE_ASSIGN_OR_RETURN(BlendedSamples b, BlendedSamples::build(cfg));
  std::unique_ptr<Loader> l(new Loader());
  l->cfg_ = cfg;
  l->samples_ = std::make_shared<const BlendedSamples>(std::move(b));
  l->consumed_ = state.consumed_samples;
  l->thread_ = std::thread([p = l.get()] { p->produce(); });
  return l;
}

Loader::~Loader() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

absl::StatusOr<MicroBatch> Loader::make_batch(int64_t block_start) const {
  const int64_t B = cfg_.micro_batch, T = cfg_.seq_length;
  MicroBatch mb;
  mb.first_sample = block_start + cfg_.dp_rank * B;
  mb.tokens = Tensor::empty({B, T}, DType::kI32);
  mb.targets = Tensor::empty({B, T}, DType::kI32);
  int32_t* tok = mb.tokens.data<int32_t>();    // (B, T)
  int32_t* tgt = mb.targets.data<int32_t>();   // (B, T)
  std::vector<int32_t> s(static_cast<size_t>(T + 1));  // (T+1)
  for (int64_t b = 0; b < B; ++b) {
    CMOE_RETURN_IF_ERROR(samples_->sample(mb.first_sample + b, s));
    std::copy(s.begin(), s.end() - 1, tok + b * T);
    std::copy(s.begin() + 1, s.end(), tgt + b * T);
  }
  return mb;
}

void Loader::produce() {
  int64_t next_block;
  {
    std::lock_guard<std::mutex> lock(mu_);
    next_block = consumed_;
  }
  const int64_t block = block_size();
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stop_ || static_cast<int>(queue_.size()) < cfg_.prefetch; });
      if (stop_) return;
    }
    absl::StatusOr<MicroBatch> item =
        next_block + block > samples_->size()
            ? absl::StatusOr<MicroBatch>(absl::OutOfRangeError(
                  absl::StrCat("loader: all ", samples_->size(), " samples consumed (the next block [", next_block,
                               ", ", next_block + block, ") runs past the end)")))
            : make_batch(next_block);
    const bool last = !item.ok();
    {
      std::lock_guard<std::mutex> lock(mu_);
      queue_.push_back(std::move(item));
    }
    cv_.notify_all();
    if (last) return;
    next_block += block;
  }
}

absl::StatusOr<MicroBatch> Loader::next() {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return !queue_.empty(); });
  if (!queue_.front().ok()) return queue_.front().status();  // stays queued: every later call sees it
  absl::StatusOr<MicroBatch> out = std::move(queue_.front());
  queue_.pop_front();
  consumed_ += block_size();
  lock.unlock();
  cv_.notify_all();
  return out;
}

LoaderState Loader::state() const {
  std::lock_guard<std::mutex> lock(mu_);
  return LoaderState{consumed_};
}

}  // namespace cmoe::data
