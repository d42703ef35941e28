// profiler.h — spans of work for a Chrome trace (chrome://tracing, Perfetto) and a per-kind
// summary, recorded only while a capture is on (train.profile_steps).
//
// A Span marks a region on the calling thread: an op's forward, an op's backward (the tape
// walk opens one per node), a collective (with its bytes), a data wait, the optimizer,
// checkpoint work, a step. Spans nest by time on a thread. With no capture running a Span costs
// one relaxed load and a branch, so instrumented code pays nothing measurable (bench/
// ops_bench: BM_ProfilerSpanOff).
//
// Work attached to a span (flops, bytes moved) gives the summary's achieved GFLOP/s or GB/s.
//
// Communication and data-wait spans are always timed, with or without a capture (two clock
// reads each, a few per step): timed_seconds() gives their running totals, from which a
// training step reports the time it waited for data (its communication wait comes from
// parallel/timed_communicator.h, which also times the posting of asynchronous operations).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace cmoe::prof {

enum class Cat : uint8_t { kStep, kPhase, kOp, kOpBackward, kComm, kData, kOptimizer, kCheckpoint, kEval, kOther };
const char* cat_name(Cat c);  // "step", "phase", "op", "op_backward", "comm", ...

struct Event {
  const char* name;     // static string (op names, fixed labels)
  Cat cat;
  int tid;              // small per-process thread number, 0 = the first thread that recorded
  int64_t begin_ns, end_ns;  // steady clock, relative to the capture's start
  double flops = 0, bytes = 0;
  int64_t arg = -1;     // e.g. the step number or micro-batch index (-1 = none)
};

inline std::atomic<bool> g_capturing{false};
inline bool capturing() { return g_capturing.load(std::memory_order_relaxed); }

// Starts a capture (discarding any previous events); events are recorded until stop().
void start();
// Ends the capture and returns its events in order of their end.
std::vector<Event> stop();

// Whether spans of this category are timed even without a capture.
constexpr bool always_timed(Cat c) { return c == Cat::kComm || c == Cat::kData; }
// Seconds spent in always-timed spans of `cat` by all threads since the process started
// (outermost spans only, so nested ones are not counted twice).
double timed_seconds(Cat cat);

class Span {
 public:
  Span(const char* name, Cat cat, int64_t arg = -1) : cat_(cat) {
    if (always_timed(cat)) begin_timing();  // the running totals hold during a capture too
    if (capturing()) open(name, cat, arg);
  }
  ~Span() {
    if (slot_ >= 0) close();
    if (timing_) end_timing();
  }
  Span(const Span&) = delete;
  Span& operator=(const Span&) = delete;
  void add_work(double flops, double bytes) {
    if (slot_ >= 0) add(flops, bytes);
  }

 private:
  void open(const char* name, Cat cat, int64_t arg);
  void close();
  void add(double flops, double bytes);
  void begin_timing();
  void end_timing();
  Cat cat_;
  int slot_ = -1;       // index in the thread's open-span stack (capturing)
  bool timing_ = false;  // counted in timed_seconds (outermost always-timed span)
  int64_t begin_ns_ = 0;
};

// Adds work to the innermost open span of this thread when it is named `name` (no-op without
// a capture, or when the innermost span is another: work lands only on the op it belongs to).
void add_work(const char* name, double flops, double bytes);

}  // namespace cmoe::prof
