// deadline_test.cpp — how a waiter spends its core (parallel/backend/deadline.h): with the
// default spin time it polls without pause, on an oversubscribed node (spin time zero) it
// sleeps between polls, so the rank it waits for can have the core, and still polls often.
#include <time.h>

#include <algorithm>
#include <chrono>

#include "gtest/gtest.h"
#include "parallel/backend/deadline.h"

namespace cmoe::parallel {
namespace {

double thread_cpu_s() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

struct Waited {
  double wall = 0, cpu = 0, longest_gap = 0;
  int polls = 0;
};

// Polls a wait that never completes for `ms` milliseconds, as a backend does.
Waited wait_for(int ms) {
  Waited w;
  const CommClock::time_point start = CommClock::now();
  DeadlineWaiter waiter(start, 60.0);
  const double cpu0 = thread_cpu_s();
  CommClock::time_point last = start;
  while (CommClock::now() - start < std::chrono::milliseconds(ms)) {
    EXPECT_TRUE(waiter.pause());
    const CommClock::time_point now = CommClock::now();
    if (++w.polls > 256) w.longest_gap = std::max(w.longest_gap, std::chrono::duration<double>(now - last).count());
    last = now;
  }
  w.wall = std::chrono::duration<double>(CommClock::now() - start).count();
  w.cpu = thread_cpu_s() - cpu0;
  return w;
}

TEST(DeadlineWaiter, SleepsBetweenPollsOnAnOversubscribedNode) {
  set_comm_spin_time(CommClock::duration::zero());
  const Waited sleeping = wait_for(100);
  set_comm_spin_time(std::chrono::milliseconds(100));  // the default again
  const Waited spinning = wait_for(100);
  // Sleeping: a small part of a core (the sleeps back off to 50 us); still polling, at least
  // every few milliseconds even on a loaded machine.
  EXPECT_LT(sleeping.cpu, 0.2 * sleeping.wall) << sleeping.cpu << " s of CPU in " << sleeping.wall << " s";
  EXPECT_GT(sleeping.polls, 300);
  EXPECT_LT(sleeping.longest_gap, 0.02);
  // Spinning (the first 100 ms of a wait by default) takes the core whenever it can.
  EXPECT_GT(spinning.cpu, 2 * sleeping.cpu) << spinning.cpu << " s of CPU spinning, " << sleeping.cpu << " sleeping";
  EXPECT_GT(spinning.polls, sleeping.polls);
}

}  // namespace
}  // namespace cmoe::parallel
