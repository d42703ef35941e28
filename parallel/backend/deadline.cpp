// deadline.cpp — DeadlineWaiter's spin / yield / sleep policy and group descriptions (see
// deadline.h). abort_job_on_timeout lives in mpi.cpp, which owns MPI_Abort.
#include "parallel/backend/deadline.h"

#include <sched.h>

#include <algorithm>
#include <thread>

#include "absl/strings/str_cat.h"

namespace cmoe::parallel {

namespace {
CommClock::duration g_spin_time = std::chrono::milliseconds(100);
}  // namespace

void set_comm_spin_time(CommClock::duration spin) { g_spin_time = spin; }

DeadlineWaiter::DeadlineWaiter(CommClock::time_point start, double timeout_s)
    : start_(start),
      deadline_(start + std::chrono::duration_cast<CommClock::duration>(
                            std::chrono::duration<double>(timeout_s))) {}

bool DeadlineWaiter::pause() {
  if (polls_++ < 256) return true;  // short operations finish while spinning
  const CommClock::time_point now = CommClock::now();
  if (now > deadline_) return false;
  if (now - start_ < g_spin_time) return true;
  if (g_spin_time == CommClock::duration::zero()) {
    // Oversubscribed: sleep, so the scheduler sees an idle core and moves a rank with work onto
    // it (a yielding rank stays runnable and keeps its core). Backs off from 10 us to 50 us:
    // polling also moves MPI's large transfers on.
    std::this_thread::sleep_for(std::chrono::microseconds(sleep_us_));
    sleep_us_ = std::min(2 * sleep_us_, 50);
    return true;
  }
  if (now - start_ < std::chrono::seconds(1)) {
    sched_yield();
  } else {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

double DeadlineWaiter::elapsed_s() const {
  return std::chrono::duration<double>(CommClock::now() - start_).count();
}

std::string describe_group(const std::string& name, int rank, int size,
                           const std::vector<int>& world_ranks) {
  std::string members;
  for (size_t i = 0; i < world_ranks.size() && i < 16; ++i) {
    absl::StrAppend(&members, i ? "," : "", world_ranks[i]);
  }
  if (world_ranks.size() > 16) absl::StrAppend(&members, ",...");
  return absl::StrCat("communicator '", name, "' (rank ", rank, " of ", size, ", world ranks ",
                      members, ")");
}

}  // namespace cmoe::parallel
