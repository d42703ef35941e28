// timed_communicator.h — how long this process waits on communication. A wrapper around any
// Communicator that adds the wall time spent inside its calls (posting an operation and
// waiting for it: CommWork::wait, so every blocking form too) to a shared CommWaitClock; groups
// split from it share the clock. The training step reads the clock before and after to report
// its communication wait apart from compute (docs/metrics.md). Overlapped communication that
// completes before anyone waits costs nothing here, which is the point: it is the time the
// rank could not compute.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>

#include "parallel/communicator.h"

namespace cmoe::parallel {

class CommWaitClock {
 public:
  void add_ns(int64_t ns) { ns_.fetch_add(ns, std::memory_order_relaxed); }
  double seconds() const { return static_cast<double>(ns_.load(std::memory_order_relaxed)) * 1e-9; }

 private:
  std::atomic<int64_t> ns_{0};
};

// `inner` with every call timed into `clock`; split() returns timed communicators on the
// same clock. Results, errors and deadlines are inner's.
std::unique_ptr<Communicator> make_timed_communicator(std::unique_ptr<Communicator> inner,
                                                      std::shared_ptr<CommWaitClock> clock);

}  // namespace cmoe::parallel
