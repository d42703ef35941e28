// deadline.h — how every backend waits: polling an operation against a deadline, and the one
// line a rank prints before it ends the job when the deadline passes.
//
// A waiter polls without pause for its first 256 polls and while the wait is younger than the
// spin time (100 ms, as blocking MPI calls spin), then yields its core between polls, then
// sleeps 1 ms between polls once the wait passes a second, so a rank waiting on a slow peer does
// not starve its neighbours. On a node with more ranks than cores (mpi_init sets the spin time
// to zero there) a waiter sleeps between polls after its first 256, 10 us doubling to 50 us:
// the peer it waits for may need the core, and a sleeping rank, unlike a yielding one, lets the
// scheduler move a rank with work onto its core. Shared by MpiCommunicator (polling
// MPI_Testall) and NcclCommunicator (polling a CUDA event and ncclCommGetAsyncError).
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <vector>

namespace cmoe::parallel {

using CommClock = std::chrono::steady_clock;

inline constexpr int kCommTimeoutExitCode = 124;  // the exit status timeout(1) uses

// The spin time of waiters created from now on (default 100 ms).
void set_comm_spin_time(CommClock::duration spin);

// One wait: construct when the operation was posted, call pause() after every poll that found
// it incomplete.
class DeadlineWaiter {
 public:
  DeadlineWaiter(CommClock::time_point start, double timeout_s);
  // Pauses as the policy above says; false once the deadline has passed (the caller then
  // reports with abort_job_on_timeout).
  bool pause();
  double elapsed_s() const;  // seconds since start

 private:
  CommClock::time_point start_, deadline_;
  int polls_ = 0;
  int sleep_us_ = 10;  // spin time zero: the next sleep
};

// "communicator 'dp' (rank 1 of 2, world ranks 1,3)", at most 16 world ranks listed.
std::string describe_group(const std::string& name, int rank, int size,
                           const std::vector<int>& world_ranks);

// Prints "cmoe: communication timeout on host H, world rank R: WHAT on GROUP did not complete
// after X s (timeout T s, ...)", runs `before_abort` (a backend releasing its device, e.g.
// ncclCommAbort) and ends the job with kCommTimeoutExitCode (MPI_Abort on MPI_COMM_WORLD when
// MPI runs). Defined in mpi.cpp beside abort_job.
[[noreturn]] void abort_job_on_timeout(const std::string& what, const std::string& group,
                                       double waited_s, double timeout_s,
                                       const std::function<void()>& before_abort = {});

}  // namespace cmoe::parallel
