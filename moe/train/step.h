// step.h — one optimizer step of a (pp, dp, ep) job, or of one process:
//
//   for the step's micro-batches, in the 1F1B order (parallel/pipeline.h):
//       forward (loss scaled by 1 / grad_accum), backward
//   reduce gradients over dp (bucketed, overlapped with the last backward; ZeRO-1:
//       reduce-scatter to each parameter's owner)
//   global norm = sqrt(sum over parameters of |g|^2 / copies)   (each gradient counted once)
//   clip = min(1, grad_clip / norm);  AdamW(lr(step), clip);  ZeRO-1: all-gather the values
//   aux-loss-free router biases from the step's expert loads
// The loss, balance losses, norm and the stop flag are reduced over the world, so every rank
// returns the same record. A non-finite norm stops before the update.
// Reporting: with pipeline stages the routers' reports of every stage are gathered to pp rank
// 0 (so world rank 0 reports them all); every train.routing_stats_interval steps, and after the
// last step, the interval's per-expert counts and co-usage (moe/train/routing_stats.h). The
// record's data and communication waits are this rank's own.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "moe/model.h"
#include "moe/train/config.h"
#include "moe/train/metrics.h"
#include "moe/train/optimizer.h"
#include "moe/train/routing_stats.h"
#include "parallel/grad_reducer.h"
#include "parallel/process_groups.h"

namespace cmoe {

struct Batch {
  Tensor ids;      // (B, T) i32
  Tensor targets;  // (B, T) i32, -1 = ignored
};
using BatchFn = std::function<absl::StatusOr<Batch>()>;

class TrainStep {
 public:
  // groups: null for one process. next: the next training micro-batch of this rank.
  // stop_requested (may be empty): read once per step after the backward passes; the step's
  // record says whether any rank asked to stop.
  TrainStep(const config::RunConfig& cfg, Model& model, AdamW& opt, parallel::ProcessGroups* groups, BatchFn next,
            std::function<bool()> stop_requested = {});

  struct Result {
    StepRecord record;
    bool stop = false;
  };
  // Runs step `step` (0-based) to completion.
  absl::StatusOr<Result> run(int64_t step);

  // "data parallel: N gradient buckets, ..." after the first step, or "" without dp.
  std::string describe() const;
  // Bytes of the parameters' gradients when the last step's backward passes ended (before
  // the reduction), for checks of memory plans (moe/train/plan.h).
  int64_t last_grad_bytes() const { return grad_bytes_; }

 private:
  absl::Status micro_batches(double& loss_sum, double& aux_sum, int64_t& tokens, std::vector<RouterReport>& reports,
                             std::vector<CoUsage>& co_usage);

  const config::RunConfig& cfg_;
  Model& model_;
  AdamW& opt_;
  parallel::ProcessGroups* groups_;
  BatchFn next_;
  std::function<bool()> stop_requested_;
  ForwardOptions fopt_;
  int dp_ = 1, ep_ = 1;
  bool zero1_ = false;
  std::unique_ptr<parallel::GradReducer> reducer_;
  int64_t grad_bytes_ = 0;
  RoutingStats routing_;
};

}  // namespace cmoe
