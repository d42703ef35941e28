// local_comm_test.cpp — LocalCommunicator: every collective has its size-1 meaning, the
// argument checks match the MPI backend's, and unmatched self-messages are errors rather
// than hangs. Also covers the timing wrapper, the CMOE_COMM_TIMEOUT_S parsing, make_process_groups over a single
// process and make_gpu_communicator without a launcher.
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "parallel/backend/local.h"
#include "parallel/timed_communicator.h"
#include "core/cuda/cuda_backend.h"
#include "core/cuda/plugin_loader.h"
#include "parallel/process_groups.h"

namespace cmoe::parallel {
namespace {

Tensor iota(int64_t rows, int64_t cols) {
  Tensor t = Tensor::empty({rows, cols}, DType::kF32);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = static_cast<float>(i);
  return t;
}

TEST(TimedComm, CountsTimeInCallsAndSharesTheClockWithSplits) {
  auto clock = std::make_shared<CommWaitClock>();
  std::unique_ptr<Communicator> c = make_timed_communicator(std::make_unique<LocalCommunicator>(), clock);
  EXPECT_EQ(c->size(), 1);
  EXPECT_EQ(c->name(), "world");
  EXPECT_EQ(clock->seconds(), 0.0);
  Tensor t = iota(64, 64);
  ASSERT_TRUE(c->all_reduce(t).ok());
  EXPECT_EQ(t.to_floats(), iota(64, 64).to_floats());  // results are the inner communicator's
  const double after_one = clock->seconds();
  EXPECT_GT(after_one, 0.0);
  auto child = c->split(0, 0, "dp");
  ASSERT_TRUE(child.ok()) << child.status();
  EXPECT_EQ((*child)->name(), "dp");
  auto w = (*child)->all_reduce_async(t, ReduceOp::kSum);
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE(w->wait().ok());
  EXPECT_GT(clock->seconds(), after_one);
  // Errors come through unchanged.
  Tensor ints = Tensor::empty({2}, DType::kU16);
  EXPECT_FALSE(c->all_reduce(ints).ok());
}

TEST(LocalComm, CollectivesAreIdentities) {
  LocalCommunicator c;
  EXPECT_EQ(c.rank(), 0);
  EXPECT_EQ(c.size(), 1);
  Tensor t = iota(3, 4);
  ASSERT_TRUE(c.all_reduce(t).ok());
  ASSERT_TRUE(c.broadcast(t, 0).ok());
  EXPECT_EQ(t.to_floats(), iota(3, 4).to_floats());

  Tensor out = Tensor::zeros({12}, DType::kF32);
  ASSERT_TRUE(c.reduce_scatter(out, t).ok());
  EXPECT_EQ(out.to_floats(), t.to_floats());
  out.zero_();
  ASSERT_TRUE(c.all_gather(out.view({3, 4}), t).ok());
  EXPECT_EQ(out.to_floats(), t.to_floats());
  out.zero_();
  ASSERT_TRUE(c.all_to_all(out, t).ok());
  EXPECT_EQ(out.to_floats(), t.to_floats());

  Tensor o2 = Tensor::zeros({3, 4}, DType::kF32);
  std::vector<int64_t> rows = {3};
  ASSERT_TRUE(c.all_to_all_v(o2, rows, t, rows).ok());
  EXPECT_EQ(o2.to_floats(), t.to_floats());
  // In place (out aliases in) is allowed.
  ASSERT_TRUE(c.all_to_all_v(t, rows, t, rows).ok());
  EXPECT_EQ(t.to_floats(), iota(3, 4).to_floats());
  ASSERT_TRUE(c.barrier().ok());
}

TEST(LocalComm, SelfSendRecvMatchesByTag) {
  LocalCommunicator c;
  Tensor a = Tensor::full({4}, 1.0f), b = Tensor::full({2}, 2.0f);
  Tensor ra = Tensor::zeros({4}, DType::kF32), rb = Tensor::zeros({2}, DType::kF32);
  std::vector<P2POp> ops = {{P2POp::kRecv, rb, 0, 7}, {P2POp::kSend, a, 0, 6},
                            {P2POp::kSend, b, 0, 7}, {P2POp::kRecv, ra, 0, 6}};
  ASSERT_TRUE(c.batch_p2p(ops).ok());
  EXPECT_EQ(ra.to_floats(), a.to_floats());
  EXPECT_EQ(rb.to_floats(), b.to_floats());
  // A lone send or receive can never complete: an error, not a hang.
  absl::Status s = c.send(a, 0, 1);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("no matching recv"), std::string::npos) << s;
  EXPECT_EQ(c.recv(a, 0, 1).code(), absl::StatusCode::kFailedPrecondition);
}

TEST(LocalComm, ArgumentErrorsNameTheOperation) {
  LocalCommunicator c("dp");
  Tensor t = iota(3, 4);
  std::vector<int64_t> two = {3}, bad = {2};
  absl::Status s = c.all_to_all_v(t, two, t, bad);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("all_to_all_v on communicator 'dp'"), std::string::npos) << s;
  Tensor wrong_rows = Tensor::zeros({3, 5}, DType::kF32);
  EXPECT_FALSE(c.all_to_all_v(wrong_rows, two, t, two).ok());
  EXPECT_FALSE(c.all_reduce(Tensor::zeros({2}, DType::kBF16)).ok());
  EXPECT_FALSE(c.all_gather(Tensor::zeros({5}, DType::kF32), t).ok());
  EXPECT_FALSE(c.reduce_scatter(Tensor::zeros({5}, DType::kF32), t).ok());
  EXPECT_FALSE(c.broadcast(t, 1).ok());
  EXPECT_FALSE(c.all_reduce(Tensor()).ok());
}

TEST(LocalComm, AsyncWorkIsCompleteAtOnce) {
  LocalCommunicator c;
  Tensor t = iota(2, 2);
  auto w = c.all_reduce_async(t, ReduceOp::kMax);
  ASSERT_TRUE(w.ok());
  EXPECT_TRUE(w->done());
  EXPECT_TRUE(w->wait().ok());
}

TEST(LocalComm, ProcessGroupsOfOneRank) {
  auto g = make_process_groups(std::make_unique<LocalCommunicator>(), ParallelLayout{});
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(g->dp->name(), "dp");
  EXPECT_EQ(g->edp->size(), 1);
  EXPECT_EQ(g->place.ep_group, std::vector<int>{0});
  auto bad = make_process_groups(std::make_unique<LocalCommunicator>(), ParallelLayout{1, 2, 1});
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(LocalComm, TimeoutFromEnvironment) {
  ::setenv("CMOE_COMM_TIMEOUT_S", "2.5", 1);
  EXPECT_EQ(default_comm_timeout_s(), 2.5);
  EXPECT_EQ(LocalCommunicator().timeout_s(), 2.5);
  ::setenv("CMOE_COMM_TIMEOUT_S", "soon", 1);
  EXPECT_EQ(default_comm_timeout_s(), kDefaultCommTimeoutS);
  ::setenv("CMOE_COMM_TIMEOUT_S", "-1", 1);
  EXPECT_EQ(default_comm_timeout_s(), kDefaultCommTimeoutS);
  ::unsetenv("CMOE_COMM_TIMEOUT_S");
  EXPECT_EQ(default_comm_timeout_s(), kDefaultCommTimeoutS);
}

TEST(LocalComm, WorldIsLocalWithoutALauncher) {
  if (launched_by_mpi()) GTEST_SKIP() << "running under an MPI launcher";
  auto w = make_world_communicator();
  ASSERT_TRUE(w.ok());
  EXPECT_EQ((*w)->size(), 1);
}

// One process, no launcher: a size-1 NCCL communicator on device 0 where a GPU is usable, else
// an error carrying the reason there is none (CUDA backend not built or not loadable, no
// driver, no device), or Unimplemented from a CUDA backend built without NCCL.
TEST(LocalComm, GpuCommunicatorOrAReason) {
  if (launched_by_mpi()) GTEST_SKIP() << "running under an MPI launcher";
  LocalCommunicator boot;
  auto g = make_gpu_communicator(boot, "gpu");
  absl::StatusOr<int> gpus = cuda::device_count();
  if (!gpus.ok()) {
    ASSERT_FALSE(g.ok());
    const std::string msg(g.status().message());
    EXPECT_EQ(g.status().code(), gpus.status().code()) << msg;
    EXPECT_NE(msg.find("1 of 1 ranks could not set up their GPU"), std::string::npos) << msg;
    EXPECT_NE(msg.find(std::string(gpus.status().message())), std::string::npos) << msg;
    std::printf("make_gpu_communicator without a GPU: %s\n", msg.c_str());
    return;
  }
  if (cuda::loaded_api().has_nccl == 0) {
    EXPECT_EQ(g.status().code(), absl::StatusCode::kUnimplemented) << g.status();
    EXPECT_NE(g.status().message().find("built without NCCL"), std::string::npos) << g.status();
    return;
  }
  ASSERT_TRUE(g.ok()) << g.status();
  Communicator& c = **g;
  EXPECT_EQ(c.size(), 1);
  EXPECT_EQ(c.name(), "gpu");
  EXPECT_TRUE(c.device().is_cuda());
  Tensor t = Tensor::full({4}, 3.0f, c.device());
  ASSERT_TRUE(c.all_reduce(t).ok());
  EXPECT_EQ(t.to_floats(), std::vector<float>(4, 3.0f));
  // bf16 reduces on CUDA tensors, with NCCL and with the local backend alike.
  Tensor b = Tensor::zeros({4}, DType::kBF16, c.device());
  EXPECT_TRUE(c.all_reduce(b).ok());
  EXPECT_TRUE(LocalCommunicator("one-gpu", c.device()).all_reduce(b).ok());
}

}  // namespace
}  // namespace cmoe::parallel
