// train_data.h — the data a run reads: loaders over the config's training blend and its
// validation data, as micro-batch functions for the step and evaluation.
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "data/loader.h"
#include "moe/train/config.h"
#include "moe/train/step.h"

namespace cmoe {

// A loader over the train split (train = true) of data.prefix / data.sources, or over the
// validation data (data.valid_prefix's valid split when set, else the train data's valid
// split), for data-parallel rank dp_rank of dp_size, starting after `consumed` samples.
absl::StatusOr<std::unique_ptr<data::Loader>> open_loader(const config::RunConfig& cfg, bool train, int64_t num_samples,
                                                          int64_t consumed, int dp_size = 1, int dp_rank = 0);

// Micro-batches of `loader` (shared: the function keeps it alive).
BatchFn batches_of(std::shared_ptr<data::Loader> loader);

// A fresh pass over the validation data for an evaluation of train.eval_batches batches;
// an error opening it is returned by the first call.
BatchFn validation_batches(const config::RunConfig& cfg, int dp_size = 1, int dp_rank = 0);

}  // namespace cmoe
