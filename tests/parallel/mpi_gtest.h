// mpi_gtest.h — GoogleTest under mpirun: rank 0 prints the usual report; the other ranks print
// only their failed assertions, prefixed with their rank (shared by the MPI test mains).
#pragma once

#include <gtest/gtest.h>

#include <cstdio>

namespace cmoe::testing {

class RankFailurePrinter : public ::testing::EmptyTestEventListener {
 public:
  explicit RankFailurePrinter(int rank) : rank_(rank) {}
  void OnTestPartResult(const ::testing::TestPartResult& r) override {
    if (!r.failed()) return;
    std::fprintf(stderr, "[rank %d] %s:%d: %s\n", rank_, r.file_name() ? r.file_name() : "?", r.line_number(),
                 r.summary());
  }

 private:
  int rank_;
};

// On ranks other than 0, replaces the default printer by RankFailurePrinter.
inline void print_failures_only_off_rank0(int rank) {
  if (rank == 0) return;
  auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
  delete listeners.Release(listeners.default_result_printer());
  listeners.Append(new RankFailurePrinter(rank));
}

}  // namespace cmoe::testing
