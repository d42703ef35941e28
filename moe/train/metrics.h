// metrics.h — what a training run reports: one JSON object per line in metrics.jsonl (a step,
// a validation, or checkpoint work) and the console lines, written by world rank 0 only.
//
// Metric formulas (written once, here and in docs/metrics.md):
//   tokens_per_s  = tokens in the step's micro-batches (all ranks) / wall seconds of the step
//   mfu           = flops_per_token * tokens_per_s / (measured matmul peak FLOP/s * ranks)
//   max_over_mean = max_e c_e / mean_e c_e ; cv = std_e(c_e) / mean_e(c_e) over a router's
//                   expert counts c_e; dropped_frac = dropped pairs / routed pairs
//   data_wait_s   = seconds world rank 0 waited for its micro-batches in the step
//   comm_wait_s   = seconds world rank 0 spent in communication calls in the step
//   compute_s     = step_s - data_wait_s - comm_wait_s
// Interval counts and co-usage: moe/train/routing_stats.h.
#pragma once

#include <chrono>
#include <cstdint>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "moe/model.h"
#include "moe/train/routing_stats.h"
#include "moe/train/tensorboard.h"

namespace cmoe {

struct LoadStats {
  double max_over_mean = 0, cv = 0, dropped_frac = 0;
};
LoadStats load_stats(const RouterReport& r);

// Merges per-micro-batch reports of the same router (counts, pairs, dropped and aux added).
std::vector<RouterReport> merge_reports(const std::vector<RouterReport>& all);

// One optimizer step as the loop saw it (global values: reduced over the job).
struct StepRecord {
  int64_t step = 0;       // steps completed
  double loss = 0;        // mean token CE over the step's micro-batches
  double aux = 0;         // scaled balance losses, mean over micro-batches
  float lr = 0;
  double grad_norm = 0;   // before clipping
  int64_t tokens = 0;     // all ranks
  double seconds = 0;     // wall time of the step
  double peak_device_mb = -1;  // this rank's peak device memory in the step (MiB); < 0: CPU run
  // This rank's communication in the step, per kind (parallel::CommCounters; zero on one
  // process). metrics.jsonl reports world rank 0's.
  parallel::CommCounters comm;
  // Where the step's time went on the reporting rank: waiting for the next micro-batch (data),
  // inside communication calls (comm), and the rest (compute = seconds - data - comm).
  double data_s = 0, comm_s = 0;
  std::vector<RouterReport> routers;  // every router of the model (all pipeline stages)
  std::optional<RoutingInterval> routing;  // at the end of each routing-stats interval
};

struct EvalResult {
  double loss = 0;  // mean token cross-entropy (nats)
  double ppl = 0;   // exp(loss)
  int64_t tokens = 0;
  std::vector<RouterReport> routers;
};

// A run continuing from `step` (a resume; 0 for a fresh start) supersedes the records an earlier
// process wrote past it: rewrites run_dir/metrics.jsonl keeping, in order, every record whose
// "step" is <= step (and any complete JSON line without a step), dropping the rest and any torn
// line a killed process left; the new file is written aside and renamed over the old, so a
// crash meanwhile leaves one or the other. No file, or nothing to drop: nothing is written.
// Returns the number of lines dropped. World rank 0, once the run is known to start.
absl::StatusOr<int64_t> metrics_drop_after(const std::string& run_dir, int64_t step);

class MetricsWriter {
 public:
  // active: this rank reports (world rank 0); the others' calls do nothing. Appends to
  // run_dir/metrics.jsonl and, with tensorboard, writes a new TensorBoard event file in
  // run_dir (moe/train/tensorboard.h). flops_per_token and peak_flops (the machine's measured
  // matmul FLOP/s) give MFU; ranks = the world size.
  static absl::StatusOr<MetricsWriter> open(const std::string& run_dir, bool active, double flops_per_token,
                                            double peak_flops, int ranks, int64_t steps, int64_t log_interval,
                                            bool tensorboard = false);

  // The step's record; on the console every log_interval steps, the first and the last.
  void step(const StepRecord& r, int64_t first_step, int64_t end_step);
  void eval(int64_t step, const EvalResult& ev);
  void checkpoint(int64_t step, double seconds);

  // The TensorBoard event file ("" without one).
  std::string tensorboard_path() const { return tb_ ? tb_->path() : ""; }

  double tokens_per_s(const StepRecord& r) const { return r.tokens / r.seconds; }
  double mfu(const StepRecord& r) const { return flops_per_token_ * tokens_per_s(r) / peak_ / ranks_; }

 private:
  MetricsWriter() = default;
  void routing(const RoutingInterval& r);
  // Writes a TensorBoard summary; a failure is reported once and ends TensorBoard output
  // (metrics.jsonl and training go on).
  void tb_write(int64_t step, const tensorboard::Summary& s, bool flush);
  bool active_ = false;
  std::ofstream out_;
  std::unique_ptr<TensorBoardWriter> tb_;
  double flops_per_token_ = 0, peak_ = 1;
  int ranks_ = 1;
  int64_t steps_ = 0, log_interval_ = 1;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace cmoe
