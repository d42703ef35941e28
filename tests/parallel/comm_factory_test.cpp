// comm_factory_test.cpp — make_communicator's decisions (parallel/comm_factory.h) and the
// host-staged backend (parallel/staging.h) in one process: the launcher's local rank, the
// shared-GPU rule that sends a job to the staged backend, CMOE_GPU_COMM's values, the factory's
// argument errors, and StagedCommunicator's size-1 semantics and checks (staged over the
// single-process backend, staging "device" = the CPU, which runs the same copies).
// Multi-rank staging: staged_comm_test under mpirun.
#include <map>
#include <string>

#include "gtest/gtest.h"
#include "parallel/backend/local.h"
#include "parallel/comm_factory.h"
#include "parallel/communicator.h"
#include "parallel/staging.h"

namespace cmoe::parallel {
namespace {

std::function<const char*(const char*)> env_of(const std::map<std::string, std::string>& vars) {
  return [vars](const char* name) -> const char* {
    auto it = vars.find(name);
    return it == vars.end() ? nullptr : it->second.c_str();
  };
}

TEST(CommFactory, LocalRankFromLauncherEnvironment) {
  EXPECT_EQ(local_rank_from_env(env_of({})), std::nullopt);
  EXPECT_EQ(local_rank_from_env(env_of({{"OMPI_COMM_WORLD_LOCAL_RANK", "3"}})), 3);
  EXPECT_EQ(local_rank_from_env(env_of({{"SLURM_LOCALID", "1"}})), 1);
  EXPECT_EQ(local_rank_from_env(env_of({{"MPI_LOCALRANKID", "2"}})), 2);
  // Open MPI's variable wins; an unusable value is skipped, not guessed at.
  EXPECT_EQ(local_rank_from_env(env_of({{"OMPI_COMM_WORLD_LOCAL_RANK", "0"}, {"SLURM_LOCALID", "5"}})), 0);
  EXPECT_EQ(local_rank_from_env(env_of({{"OMPI_COMM_WORLD_LOCAL_RANK", "x"}, {"SLURM_LOCALID", "5"}})), 5);
  EXPECT_EQ(local_rank_from_env(env_of({{"SLURM_LOCALID", "-1"}})), std::nullopt);
}

TEST(CommFactory, SharedGpuDetection) {
  // Two nodes with two GPUs each, one rank per GPU: NCCL can serve it.
  EXPECT_FALSE(ranks_share_a_gpu(std::vector<int64_t>{7, 7, 9, 9}, std::vector<int64_t>{0, 1, 0, 1}));
  // Two ranks on one GPU of one node (a one-GPU machine running a 2-rank job): staged.
  EXPECT_TRUE(ranks_share_a_gpu(std::vector<int64_t>{7, 7}, std::vector<int64_t>{0, 0}));
  EXPECT_TRUE(ranks_share_a_gpu(std::vector<int64_t>{7, 9, 7}, std::vector<int64_t>{1, 1, 1}));
  EXPECT_FALSE(ranks_share_a_gpu(std::vector<int64_t>{7}, std::vector<int64_t>{0}));
}

TEST(CommFactory, GpuCommChoice) {
  GpuCommChoice c = GpuCommChoice::kNccl;
  EXPECT_TRUE(parse_gpu_comm("", &c));
  EXPECT_EQ(c, GpuCommChoice::kAuto);
  EXPECT_TRUE(parse_gpu_comm("staged", &c));
  EXPECT_EQ(c, GpuCommChoice::kStaged);
  EXPECT_TRUE(parse_gpu_comm("nccl", &c));
  EXPECT_EQ(c, GpuCommChoice::kNccl);
  EXPECT_FALSE(parse_gpu_comm("NCCL", &c));
}

TEST(CommFactory, ArgumentErrors) {
  // A CUDA communicator needs a host bootstrap group; the CPU world is not NCCL's.
  auto no_boot = make_communicator({.device = cuda_device(0)});
  ASSERT_FALSE(no_boot.ok());
  EXPECT_EQ(no_boot.status().code(), absl::StatusCode::kInvalidArgument);
  auto cpu_nccl = make_communicator({.backend = CommBackend::kNccl});
  ASSERT_FALSE(cpu_nccl.ok());
  EXPECT_EQ(cpu_nccl.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(CommFactory, HostWorldWithoutLauncherIsLocal) {
  if (launched_by_mpi()) GTEST_SKIP() << "skipped: running under an MPI launcher";
  auto w = make_communicator();
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ((*w)->size(), 1);
  EXPECT_TRUE((*w)->device().is_cpu());
}

TEST(StagedCommunicator, SizeOneSemanticsThroughHostCopies) {
  StagedCommunicator c(std::make_unique<LocalCommunicator>("g"), kCPU);
  EXPECT_EQ(c.size(), 1);
  EXPECT_EQ(c.name(), "g");
  Tensor buf = Tensor::from_floats({3}, std::vector<float>{1, 2, 3});
  ASSERT_TRUE(c.all_reduce(buf).ok());
  EXPECT_EQ(buf.to_floats(), (std::vector<float>{1, 2, 3}));
  // bf16 reduces (in f32 on the host) and comes back as bf16.
  Tensor b16 = buf.to_dtype(DType::kBF16);
  ASSERT_TRUE(c.all_reduce(b16).ok());
  EXPECT_EQ(b16.dtype(), DType::kBF16);
  EXPECT_EQ(b16.to_floats(), (std::vector<float>{1, 2, 3}));
  Tensor out = Tensor::zeros({3}, DType::kF32);
  ASSERT_TRUE(c.all_gather(out, buf).ok());
  EXPECT_EQ(out.to_floats(), (std::vector<float>{1, 2, 3}));
  Tensor rows = Tensor::from_floats({2, 2}, std::vector<float>{1, 2, 3, 4}), got = Tensor::zeros({2, 2}, DType::kF32);
  const std::vector<int64_t> two = {2};
  ASSERT_TRUE(c.all_to_all_v(got, two, rows, two).ok());
  EXPECT_EQ(got.to_floats(), (std::vector<float>{1, 2, 3, 4}));
  Tensor recv = Tensor::zeros({2}, DType::kF32);
  const std::vector<P2POp> ops = {{P2POp::kSend, Tensor::from_floats({2}, std::vector<float>{5, 6}), 0, 4},
                                  {P2POp::kRecv, recv, 0, 4}};
  ASSERT_TRUE(c.batch_p2p(ops).ok());
  EXPECT_EQ(recv.to_floats(), (std::vector<float>{5, 6}));
  auto child = c.split(0, 0, "child");
  ASSERT_TRUE(child.ok());
  EXPECT_EQ((*child)->name(), "child");
  EXPECT_TRUE((*child)->device().is_cpu());
  EXPECT_TRUE(c.barrier().ok());
}

TEST(StagedCommunicator, RefusesTensorsOfAnotherDevice) {
  StagedCommunicator c(std::make_unique<LocalCommunicator>("g"), cuda_device(0));
  Tensor host = Tensor::zeros({2}, DType::kF32);
  absl::Status st = c.all_reduce(host);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(st.message()).find("wrong device"), std::string::npos) << st.message();
}

TEST(Staging, HostValuesOverAHostCommunicatorArePlainOps) {
  LocalCommunicator c("g");
  Tensor t = Tensor::from_ints({2}, std::vector<int32_t>{4, 5});
  ASSERT_TRUE(all_reduce_host(c, t).ok());
  EXPECT_EQ(t.data<int32_t>()[1], 5);
  Tensor out = Tensor::zeros({1}, DType::kI64), in = Tensor::zeros({1}, DType::kI64);
  in.data<int64_t>()[0] = 9;
  ASSERT_TRUE(all_to_all_host(c, out, in).ok());
  EXPECT_EQ(out.data<int64_t>()[0], 9);
}

}  // namespace
}  // namespace cmoe::parallel
