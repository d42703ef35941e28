// trainer.h — a training run: the loop, and everything `cmoe train` / `cmoe eval` do around it
// (the job's process groups, the run directory, resume, data, checkpoints, metrics).
//
// The loop, per step: TrainStep (moe/train/step.h: micro-batches in the 1F1B order, gradient
// reduction, clipping, AdamW), the step's record (moe/train/metrics.h), checkpoint work at the
// step boundary (CheckpointPolicy, moe/train/train_state.h), validation every
// train.eval_interval steps, and a clean stop on request (SIGTERM) or at train.exit_at_step.
//
// Parallel: `mpirun -np N cmoe train ...` with N = pp * dp. Every rank builds its shard of the
// model (pipeline stage, expert slice), reads its data-parallel slice of each global
// micro-batch, and trains; world rank 0 prints and writes the run directory; checkpoints are
// written by the ranks owning each slice and committed by world rank 0; any layout resumes
// any checkpoint. An error on any rank ends the whole job.
#pragma once

#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "moe/train/config.h"
#include "moe/train/evaluate.h"
#include "moe/train/metrics.h"
#include "moe/train/profile.h"
#include "moe/train/step.h"
#include "moe/train/train_state.h"

namespace cmoe {

struct TrainSummary {
  int64_t steps_done = 0;
  double final_train_loss = 0;
  EvalResult final_eval;
};

// What the loop drives; the caller owns them. checkpoints may be null (no saving); validate
// may be empty (no validation).
struct TrainLoop {
  const config::RunConfig& cfg;
  TrainStep& step;
  MetricsWriter& metrics;
  CheckpointPolicy* checkpoints = nullptr;
  std::function<absl::StatusOr<EvalResult>()> validate;
  Model& model;
  AdamW& opt;
  bool rank0 = true;
  StepProfiler* profiler = nullptr;  // train.profile_steps
};

// Trains from `start_step` (0 for a fresh run) to train.steps (or train.exit_at_step).
absl::StatusOr<TrainSummary> train_loop(TrainLoop& loop, int64_t start_step);

// `cmoe train`: runs (or resumes) the run in run_dir with config cfg; resume = a checkpoint
// directory to start from instead of run_dir/checkpoints/latest. Nothing in run_dir changes
// until the run is known to start (config valid for the ranks, checkpoint found, verified and
// compatible, data opened). Returns an error on one process; in a multi-rank job an error on
// any rank ends the job (parallel::abort_job) and this does not return.
absl::Status train_run(const config::RunConfig& cfg, const std::string& run_dir, const std::string& resume);

struct CheckpointEval {
  std::string dir;  // the step directory evaluated
  int64_t step = 0;
  EvalResult result;
};
// `cmoe eval`: validation loss of a checkpoint (a step directory, or a checkpoints root with
// `latest`) for a model of config cfg, on train.eval_batches micro-batches of the validation
// data per data-parallel rank (split over dp as training's validation does), dropless.
// One process evaluates the whole model whatever cfg.parallel says; `mpirun -np N` runs the
// layout of cfg.parallel (pp * dp = N), or, when the config sets none, dp = N. Every rank
// returns the global result; in a multi-rank job an error on any rank ends the job.
// disable_top1 is refused for variants without a learned router (variant_check_disable_top1).
// disable_top1_set (with disable_top1): only that expert set's routers ("moeA", "moeB", "moe");
// a set the model does not have is InvalidArgument.
absl::StatusOr<CheckpointEval> eval_checkpoint(const config::RunConfig& cfg, const std::string& checkpoint,
                                               bool disable_top1, const std::string& disable_top1_set = "");

}  // namespace cmoe
