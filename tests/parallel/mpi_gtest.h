// mpi_gtest.h — GoogleTest under mpirun: rank 0 prints the usual report; the other ranks print
// only their failed assertions, prefixed with their rank; the start and end of the MPI test
// mains, shared by them.
#pragma once

#include <gtest/gtest.h>

#include <cstdio>
#include <memory>

#include "parallel/backend/mpi.h"

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

// The start of an MPI test main: MPI and the world communicator, the job aborted on failure,
// and rank 0's printer only.
inline std::unique_ptr<parallel::MpiCommunicator> mpi_test_world(int* argc, char*** argv) {
  ::testing::InitGoogleTest(argc, *argv);
  absl::Status s = parallel::mpi_init(argc, argv);
  if (!s.ok()) parallel::abort_job(s);
  auto world = parallel::MpiCommunicator::world();
  if (!world.ok()) parallel::abort_job(world.status());
  print_failures_only_off_rank0((*world)->rank());
  return std::move(*world);
}

// Runs every test; returns 1 when any rank failed (so all ranks agree), else 0.
inline int run_all_tests_on_every_rank(parallel::Communicator& world) {
  const int failed = RUN_ALL_TESTS() != 0;
  Tensor t = Tensor::full({1}, static_cast<float>(failed));
  if (!world.all_reduce(t).ok()) parallel::abort_job(absl::InternalError("final all_reduce failed"));
  return t.data<float>()[0] != 0 ? 1 : 0;
}

}  // namespace cmoe::testing
