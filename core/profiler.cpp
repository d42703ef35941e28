// profiler.cpp — span recording (see profiler.h). Open spans live on a per-thread stack; a
// closed span becomes an Event appended under a mutex (only while capturing).
#include "core/profiler.h"

#include <cstring>
#include <mutex>

namespace cmoe::prof {

namespace {

struct OpenSpan {
  const char* name;
  Cat cat;
  int64_t begin_ns, arg;
  double flops, bytes;
};

std::mutex g_mu;
std::vector<Event> g_events;
std::chrono::steady_clock::time_point g_t0;
std::atomic<int> g_next_tid{0};

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - g_t0).count();
}

struct ThreadState {
  int tid = g_next_tid.fetch_add(1);
  std::vector<OpenSpan> stack;
  int timed_depth[16] = {};  // open always-timed spans per category on this thread
};

constexpr int kCats = 10;
std::atomic<int64_t> g_timed_ns[kCats];
const auto g_process_start = std::chrono::steady_clock::now();

int64_t abs_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - g_process_start).count();
}
ThreadState& thread_state() {
  thread_local ThreadState s;
  return s;
}

}  // namespace

double timed_seconds(Cat cat) { return g_timed_ns[static_cast<int>(cat)].load(std::memory_order_relaxed) * 1e-9; }

void Span::begin_timing() {
  ThreadState& t = thread_state();
  timing_ = t.timed_depth[static_cast<int>(cat_)]++ == 0;  // outermost of its category only
  if (!timing_) {
    --t.timed_depth[static_cast<int>(cat_)];
    return;
  }
  begin_ns_ = abs_ns();
}

void Span::end_timing() {
  g_timed_ns[static_cast<int>(cat_)].fetch_add(abs_ns() - begin_ns_, std::memory_order_relaxed);
  --thread_state().timed_depth[static_cast<int>(cat_)];
}

const char* cat_name(Cat c) {
  switch (c) {
    case Cat::kStep: return "step";
    case Cat::kPhase: return "phase";
    case Cat::kOp: return "op";
    case Cat::kOpBackward: return "op_backward";
    case Cat::kComm: return "comm";
    case Cat::kData: return "data";
    case Cat::kOptimizer: return "optimizer";
    case Cat::kCheckpoint: return "checkpoint";
    case Cat::kEval: return "eval";
    case Cat::kOther: return "other";
  }
  return "?";
}

void start() {
  std::lock_guard<std::mutex> lock(g_mu);
  g_events.clear();
  g_t0 = std::chrono::steady_clock::now();
  g_capturing.store(true, std::memory_order_release);
}

std::vector<Event> stop() {
  g_capturing.store(false, std::memory_order_release);
  std::lock_guard<std::mutex> lock(g_mu);
  return std::move(g_events);
}

void Span::open(const char* name, Cat cat, int64_t arg) {
  if (always_timed(cat)) begin_timing();
  ThreadState& t = thread_state();
  slot_ = static_cast<int>(t.stack.size());
  t.stack.push_back({name, cat, now_ns(), arg, 0, 0});
}

void Span::close() {
  if (timing_) end_timing();
  ThreadState& t = thread_state();
  // A capture that stopped (or restarted) while this span was open records nothing.
  if (static_cast<int>(t.stack.size()) <= slot_) return;
  const OpenSpan s = t.stack[slot_];
  t.stack.resize(slot_);
  if (!capturing()) return;
  Event e{s.name, s.cat, t.tid, s.begin_ns, now_ns(), s.flops, s.bytes, s.arg};
  std::lock_guard<std::mutex> lock(g_mu);
  g_events.push_back(e);
}

void Span::add(double flops, double bytes) {
  ThreadState& t = thread_state();
  if (slot_ < static_cast<int>(t.stack.size())) {
    t.stack[slot_].flops += flops;
    t.stack[slot_].bytes += bytes;
  }
}

void add_work(const char* name, double flops, double bytes) {
  if (!capturing()) return;
  ThreadState& t = thread_state();
  if (t.stack.empty() || std::strcmp(t.stack.back().name, name) != 0) return;
  t.stack.back().flops += flops;
  t.stack.back().bytes += bytes;
}

}  // namespace cmoe::prof
