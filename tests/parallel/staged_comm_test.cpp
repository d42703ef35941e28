// staged_comm_test.cpp — StagedCommunicator (parallel/staging.h) under mpirun: every operation
// staged through host copies over the MPI backend gives the closed-form results of rank-derived
// inputs (CTest runs it with -np 2). The staging "device" is the CPU here, which runs the same
// copies a GPU job runs against device memory; each test sums its mismatches over the ranks.
#include <cstdio>
#include <vector>

#include "gtest/gtest.h"
#include "parallel/backend/mpi.h"
#include "parallel/staging.h"
#include "tests/parallel/mpi_gtest.h"

namespace cmoe::parallel {
namespace {

MpiCommunicator* g_world = nullptr;
std::unique_ptr<Communicator> g_staged;

void expect_no_errors_anywhere(int64_t local, const char* what) {
  Tensor t = Tensor::zeros({1}, DType::kI64);
  t.data<int64_t>()[0] = local;
  ASSERT_TRUE(g_world->all_reduce(t).ok());
  EXPECT_EQ(t.data<int64_t>()[0], 0) << what;
}

int rank() { return g_world->rank(); }
int size() { return g_world->size(); }

TEST(Staged, AllReduceF32AndBf16) {
  Tensor f = Tensor::full({5}, static_cast<float>(rank() + 1));
  ASSERT_TRUE(g_staged->all_reduce(f).ok());
  Tensor b = Tensor::full({5}, static_cast<float>(rank() + 1)).to_dtype(DType::kBF16);
  ASSERT_TRUE(g_staged->all_reduce(b, ReduceOp::kMax).ok());
  int64_t bad = 0;
  const float sum = static_cast<float>(size() * (size() + 1) / 2);
  for (float v : f.to_floats()) bad += v != sum;
  for (float v : b.to_floats()) bad += v != static_cast<float>(size());
  bad += b.dtype() != DType::kBF16;
  expect_no_errors_anywhere(bad, "all_reduce");
}

TEST(Staged, ReduceScatterAllGatherBroadcast) {
  const int n = size();
  Tensor in = Tensor::empty({2 * n}, DType::kF32);
  for (int i = 0; i < 2 * n; ++i) in.data<float>()[i] = static_cast<float>(i + 100 * rank());
  Tensor out = Tensor::zeros({2}, DType::kF32);
  ASSERT_TRUE(g_staged->reduce_scatter(out, in).ok());
  int64_t bad = 0;
  for (int i = 0; i < 2; ++i) bad += out.data<float>()[i] != static_cast<float>(n * (2 * rank() + i) + 100 * n * (n - 1) / 2);
  Tensor mine = Tensor::full({1}, static_cast<float>(rank())), all = Tensor::zeros({n}, DType::kF32);
  ASSERT_TRUE(g_staged->all_gather(all, mine).ok());
  for (int r = 0; r < n; ++r) bad += all.data<float>()[r] != static_cast<float>(r);
  Tensor bc = Tensor::full({3}, static_cast<float>(rank() + 7));
  ASSERT_TRUE(g_staged->broadcast(bc, n - 1).ok());
  for (float v : bc.to_floats()) bad += v != static_cast<float>(n - 1 + 7);
  expect_no_errors_anywhere(bad, "reduce_scatter / all_gather / broadcast");
}

TEST(Staged, AllToAllVAndP2P) {
  const int n = size();
  // Rank r sends (j + 1) rows to rank j, each row [r, j]; receives (r + 1) rows from each.
  std::vector<int64_t> send(n), recv(n, rank() + 1);
  std::vector<float> rows;
  for (int j = 0; j < n; ++j) {
    send[j] = j + 1;
    for (int k = 0; k <= j; ++k) rows.push_back(static_cast<float>(rank())), rows.push_back(static_cast<float>(j));
  }
  Tensor in = Tensor::from_floats({static_cast<int64_t>(rows.size() / 2), 2}, rows);
  Tensor out = Tensor::zeros({n * (rank() + 1), 2}, DType::kF32);
  ASSERT_TRUE(g_staged->all_to_all_v(out, recv, in, send).ok());
  int64_t bad = 0;
  for (int j = 0; j < n; ++j)
    for (int k = 0; k <= rank(); ++k) {
      const int row = j * (rank() + 1) + k;
      bad += out.data<float>()[2 * row] != static_cast<float>(j) || out.data<float>()[2 * row + 1] != static_cast<float>(rank());
    }
  // A ring: send to the next rank, receive from the previous.
  Tensor got = Tensor::zeros({2}, DType::kF32);
  const std::vector<P2POp> ops = {{P2POp::kSend, Tensor::full({2}, static_cast<float>(rank())), (rank() + 1) % n, 0},
                                  {P2POp::kRecv, got, (rank() + n - 1) % n, 0}};
  ASSERT_TRUE(g_staged->batch_p2p(ops).ok());
  for (float v : got.to_floats()) bad += v != static_cast<float>((rank() + n - 1) % n);
  expect_no_errors_anywhere(bad, "all_to_all_v / batch_p2p");
}

TEST(Staged, SplitKeepsStaging) {
  auto half = g_staged->split(rank() % 2, rank(), "half");
  ASSERT_TRUE(half.ok()) << half.status();
  Tensor t = Tensor::full({1}, 1.0f);
  ASSERT_TRUE((*half)->all_reduce(t).ok());
  expect_no_errors_anywhere(t.data<float>()[0] != static_cast<float>((*half)->size()), "split");
}

}  // namespace
}  // namespace cmoe::parallel

int main(int argc, char** argv) {
  using namespace cmoe::parallel;
  ::testing::InitGoogleTest(&argc, argv);
  absl::Status s = mpi_init(&argc, &argv);
  if (!s.ok()) abort_job(s);
  auto world = MpiCommunicator::world();
  if (!world.ok()) abort_job(world.status());
  g_world = world->get();
  if (g_world->size() < 2) {
    std::fprintf(stderr, "staged_comm_test needs at least 2 ranks (run it under mpirun -np 2)\n");
    return 1;
  }
  auto host = g_world->split(0, g_world->rank(), "staged");
  if (!host.ok()) abort_job(host.status());
  g_staged = std::make_unique<StagedCommunicator>(std::move(*host), cmoe::kCPU);
  cmoe::testing::print_failures_only_off_rank0(g_world->rank());
  int failed = RUN_ALL_TESTS() != 0;
  cmoe::Tensor t = cmoe::Tensor::full({1}, static_cast<float>(failed));
  if (!g_world->all_reduce(t).ok()) abort_job(absl::InternalError("final all_reduce failed"));
  g_staged.reset();
  world->reset();
  return t.data<float>()[0] != 0 ? 1 : 0;
}
