// trainer.h — the training loop: micro-batches with gradient accumulation, clipping, AdamW
// with the LR schedule, metrics (console + metrics.jsonl), periodic validation, and
// checkpoints through caller-supplied hooks — on one process or on a (pp, dp, ep) job.
//
// Parallel (groups given): every rank runs this loop on its own model shard. The step's
// micro-batches run as a 1F1B pipeline schedule over the pp stages (plain forward/backward
// when pp = 1); gradients are averaged over dp by GradReducer (buckets launched during the
// last micro-batch's backward); the clipping norm, the reported loss and the stop flag are
// reduced over the world. Only world rank 0 prints and writes metrics.jsonl.
//
// Metric formulas (written once, here and in docs/metrics.md):
//   tokens_per_s = tokens in the step's micro-batches / wall seconds of the step
//   mfu          = flops_per_token * tokens_per_s / measured matmul peak (FLOP/s)
//   load max/mean = max_e count_e / mean_e count_e ; cv = std_e(count_e) / mean_e(count_e)
#pragma once

#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "core/config/config.h"
#include "moe/model.h"
#include "moe/optimizer.h"
#include "parallel/process_groups.h"

namespace cmoe {

struct Batch {
  Tensor ids;      // (B, T) i32
  Tensor targets;  // (B, T) i32, -1 = ignored
};
using BatchFn = std::function<absl::StatusOr<Batch>()>;

struct EvalResult {
  double loss = 0;  // mean token cross-entropy (nats)
  double ppl = 0;   // exp(loss)
  int64_t tokens = 0;
  std::vector<RouterReport> routers;
};

// Mean CE over `batches` batches from next (no tape). With groups, collective over the world:
// every rank evaluates its slice (stages in a pipeline) and all get the global result.
absl::StatusOr<EvalResult> evaluate(Model& model, const BatchFn& next, int64_t batches, const ForwardOptions& opt,
                                    parallel::ProcessGroups* groups = nullptr);

struct TrainHooks {
  BatchFn next_train;                      // the next training micro-batch
  std::function<BatchFn()> valid_batches;  // a fresh pass over the validation split
  // Saves a checkpoint of (model, optimizer) after `step` completed steps.
  std::function<absl::Status(int64_t step, Model&, AdamW&)> save;
  // Called on every rank after each step's record, before its save and evaluation (collective
  // where the hook is: the asynchronous checkpoint commit polls here). Returns whether it
  // did checkpoint work (a commit), which is then timed in a {"step", "ckpt_s"} record.
  std::function<absl::StatusOr<bool>(int64_t step)> step_end;
  std::function<bool()> stop_requested;    // SIGTERM etc.: stop cleanly at the next step
};

struct TrainSummary {
  int64_t steps_done = 0;
  double final_train_loss = 0;
  EvalResult final_eval;
};

// Trains from `start_step` (0 for a fresh run) to train.steps (or train.exit_at_step), writing
// metrics.jsonl under run_dir. The model and optimizer are the caller's (resume = load first).
// groups: null for one process; else this rank's groups (model built for its shard, with
// set_parallel done). hooks.save is called on every rank (it is collective).
absl::StatusOr<TrainSummary> train_loop(const config::RunConfig& cfg, Model& model, AdamW& opt,
                                        int64_t start_step, const std::string& run_dir, TrainHooks& hooks,
                                        parallel::ProcessGroups* groups = nullptr);

}  // namespace cmoe
