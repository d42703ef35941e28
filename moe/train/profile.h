// profile.h — `--set train.profile_steps=A:B`: captures the profiler's spans (core/profiler.h)
// for steps A..B and writes, per rank,
//   RUN_DIR/profile/trace_rankR.json    Chrome trace (chrome://tracing, Perfetto): one
//                                       complete event per span, args flops/bytes/rate
//   RUN_DIR/profile/summary_rankR.txt   the table below; also printed by world rank 0
//   RUN_DIR/profile/summary_rankR.json  the same, for scripts
// The summary groups the training thread's spans by kind (an op's forward, its backward, a
// collective, data wait, optimizer, checkpoint): calls, self time (the span minus the spans
// nested in it), share of the profiled steps' time, and the achieved rate:
//   GFLOP/s = flops / self time, as % of the measured matmul peak (matmul-like ops), or
//   GB/s    = bytes / self time, as % of the measured memory bandwidth (the rest; for
//             collectives: bytes sent / time).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/profiler.h"

namespace cmoe {

struct ProfileWindow {
  int64_t first = 0, last = -1;  // steps, 1-based inclusive; last < first = off
  bool on() const { return first >= 1 && last >= first; }
};
// "" -> off; "A:B" with 1 <= A <= B; else InvalidArgument naming train.profile_steps.
absl::StatusOr<ProfileWindow> parse_profile_steps(const std::string& text);

struct ProfileRow {
  std::string kind;  // "linear", "linear backward", "all_reduce", "data wait", ...
  std::string cat;   // the span category
  int64_t calls = 0;
  double self_s = 0, flops = 0, bytes = 0;
};
struct ProfileSummary {
  int64_t steps = 0;
  double step_s = 0;            // the profiled steps' total wall time
  double covered_s = 0;         // of it, inside spans nested in the step spans
  double peak_flops = 0, memory_bytes_per_s = 0;
  std::vector<ProfileRow> rows;  // by self time, largest first
  std::string text() const;
};
// The summary of a capture's events (the thread that recorded the step spans).
ProfileSummary summarize_profile(const std::vector<prof::Event>& events, double peak_flops, double memory_bytes_per_s);

// Captures around the steps of a window: before_step(s) starts the capture when s == first,
// after_step(s) stops it when s == last and writes the files (returns the summary text on
// world rank 0, "" elsewhere and between).
class StepProfiler {
 public:
  StepProfiler(ProfileWindow window, std::string run_dir, int rank, bool rank0, double peak_flops);
  void before_step(int64_t step);
  absl::StatusOr<std::string> after_step(int64_t step);

 private:
  ProfileWindow window_;
  std::string run_dir_;
  int rank_;
  bool rank0_;
  double peak_flops_;
};

}  // namespace cmoe
