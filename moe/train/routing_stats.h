// routing_stats.h — what the routers did over an interval of training steps (per-expert counts
// and every Cartesian layer's A x B co-usage), and every pipeline stage's router reports
// brought to world rank 0, which writes the metrics.
//
//   counts[e]       pairs routed to expert e, summed over the interval's steps and micro-batches
//                   (global over data parallelism, as the routers' counts are)
//   co_usage[a, b]  (token, a, b) with a among the token's A choices and b among its B choices,
//                   summed over the interval's steps and micro-batches and over the data-parallel
//                   group (k_A * k_B pairs per token)
// Layout: docs/metrics.md (the "routing" record of metrics.jsonl, the TensorBoard histograms and
// heatmaps).
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "core/json.h"
#include "moe/model.h"
#include "parallel/communicator.h"

namespace cmoe {

struct RoutingInterval {
  int64_t first_step = 0;  // the interval covers steps first_step + 1 .. last_step
  int64_t last_step = 0;
  std::vector<RouterReport> routers;  // counts, pairs and dropped summed over the interval
  std::vector<CoUsage> co_usage;
};

// Adds same-named matrices of `add` into `into` (appending new layers).
void merge_co_usage(std::vector<CoUsage>& into, const std::vector<CoUsage>& add);

// Accumulates one stage's routing over the steps of an interval, on every rank.
class RoutingStats {
 public:
  explicit RoutingStats(int64_t interval);  // steps per record, >= 1
  // After step `step` (the number of steps completed): the step's merged reports of this
  // stage and this rank's co-usage summed over the step's micro-batches.
  void add(int64_t step, const std::vector<RouterReport>& routers, const std::vector<CoUsage>& co_usage);
  // A record is due after `step` every `interval` steps and after the last step of a run.
  bool due(int64_t step, bool last) const { return step % interval_ == 0 || last; }
  // The interval so far (co-usage summed over `dp`: collective over it when it has more than
  // one rank; null = this rank alone); the next interval starts empty.
  absl::StatusOr<RoutingInterval> take(parallel::Communicator* dp);

 private:
  int64_t interval_;
  RoutingInterval cur_;
  bool started_ = false;
};

// With pipeline stages: every stage's reports (and interval, when given) on pp rank 0, in stage
// order, appended to its own; other ranks keep theirs. Collective over `pp` (null or one rank:
// nothing to do). Every rank of pp must pass an interval or none, alike.
absl::Status gather_stage_routing(parallel::Communicator* pp, std::vector<RouterReport>& routers,
                                  std::optional<RoutingInterval>* interval);

// JSON forms (the metrics.jsonl "routing" record; also how stages send them to rank 0).
json::Value routing_interval_to_json(const RoutingInterval& r);
json::Value router_reports_to_json(const std::vector<RouterReport>& routers);

}  // namespace cmoe
