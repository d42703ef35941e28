// train_state.h — the bridge between a training run's state and checkpoint tensors: names
// model weights as themselves, AdamW moments as "optim.exp_avg.<name>" / "optim.exp_avg_sq.
// <name>", aux-free router biases as their own names; counters carry step, optimizer steps,
// tokens seen and the data loader's consumed samples.
//
// A checkpoint is layout-independent: it always holds the whole model's global tensors. In a
// parallel job save_train_state_parallel gathers them to world rank 0 (expert slices
// all-gathered over each stage's first ep block, stages sent to rank 0 over its pipeline
// group) and rank 0 writes; load_train_state reads the global tensors on every rank and
// keeps the rows of its own expert slice (Param::row0), so a run resumes under any layout.
#pragma once

#include <string>
#include <vector>

#include "checkpoint/checkpoint.h"
#include "core/config/config.h"
#include "moe/model.h"
#include "moe/optimizer.h"
#include "parallel/process_groups.h"

namespace cmoe {

struct RunCounters {
  int64_t step = 0;
  int64_t tokens_seen = 0;
  int64_t consumed_samples = 0;
};

// Saves a checkpoint of the run under root (<run-dir>/checkpoints).
absl::StatusOr<std::string> save_train_state(const std::string& root, const config::RunConfig& cfg, Model& model,
                                             AdamW& opt, const RunCounters& counters);

// Collective over the world of `groups`: every rank calls it; world rank 0 writes and returns
// the directory, the others return "". Needs every expert set divisible by ep.
absl::StatusOr<std::string> save_train_state_parallel(const std::string& root, const config::RunConfig& cfg,
                                                      Model& model, AdamW& opt, const RunCounters& counters,
                                                      parallel::ProcessGroups& groups);

// Loads weights (and, if opt is non-null, optimizer state) from a verified checkpoint. Fails
// naming the tensor when one is missing or its shape differs, and when the checkpoint's model
// config differs from cfg's.
absl::StatusOr<RunCounters> load_train_state(const LoadedCheckpoint& ck, const config::RunConfig& cfg, Model& model,
                                             AdamW* opt);

}  // namespace cmoe
