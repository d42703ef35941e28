// train_state.h — the bridge between a training run's state and checkpoint tensors: names
// model weights as themselves, AdamW moments as "optim.exp_avg.<name>" / "optim.exp_avg_sq.
// <name>", aux-free router biases as their own names; counters carry step, optimizer steps,
// tokens seen and the data loader's consumed samples.
#pragma once

#include <string>
#include <vector>

#include "checkpoint/checkpoint.h"
#include "core/config/config.h"
#include "moe/model.h"
#include "moe/optimizer.h"

namespace cmoe {

struct RunCounters {
  int64_t step = 0;
  int64_t tokens_seen = 0;
  int64_t consumed_samples = 0;
};

// Saves a checkpoint of the run under root (<run-dir>/checkpoints).
absl::StatusOr<std::string> save_train_state(const std::string& root, const config::RunConfig& cfg, Model& model,
                                             AdamW& opt, const RunCounters& counters);

// Loads weights (and, if opt is non-null, optimizer state) from a verified checkpoint. Fails
// naming the tensor when one is missing or its shape differs, and when the checkpoint's model
// config differs from cfg's.
absl::StatusOr<RunCounters> load_train_state(const LoadedCheckpoint& ck, const config::RunConfig& cfg, Model& model,
                                             AdamW* opt);

}  // namespace cmoe
