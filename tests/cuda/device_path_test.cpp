// device_path_test.cpp — the host side of the training step on a device, run on the CPU against
// the recording plugin (tests/cuda/recording_plugin.cpp: device memory is host memory, streams,
// events and a one-rank NCCL are logged, the optimizer step's few kernels are host loops).
// CTest starts it under mpirun -np 2 with CMOE_CUDA_PLUGIN pointing at that plugin.
//
//   * stream and event ordering: a collective waits (an event recorded on the compute stream,
//     waited on by the communicator's stream) for the work queued before it, runs between
//     group start and end on its own stream, and completes through an event recorded after it;
//     its buffers stay alive until then; memsets run on the compute stream;
//   * the gradient reducer's device path (packing with device copies, averaging, ZeRO-1's
//     reduce-scatter and all-gather) over the host-staged backend across two ranks, against the
//     closed form of rank-derived gradients;
//   * the multi-tensor AdamW and squared norms (pointer and chunk lists) against the CPU path.
#include <dlfcn.h>

#include <cmath>
#include <cstdio>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/cuda/cuda_backend.h"
#include "core/cuda/caching_allocator.h"
#include "core/cuda/launch_geometry.h"
#include "core/cuda/multi_tensor.h"
#include "core/cuda/plugin_loader.h"
#include "gtest/gtest.h"
#include "moe/train/optimizer.h"
#include "parallel/backend/local.h"
#include "parallel/backend/mpi.h"
#include "parallel/backend/nccl.h"
#include "parallel/grad_reducer.h"
#include "parallel/staging.h"
#include "tests/parallel/mpi_gtest.h"

namespace cmoe {
namespace {

parallel::MpiCommunicator* g_world = nullptr;
const Device kDev = cuda_device(0);

// The recording plugin's log (cleared after reading when `clear`).
std::vector<std::string> plugin_log(bool clear = true) {
  void* h = dlopen(cuda::plugin_path().c_str(), RTLD_LAZY | RTLD_NOLOAD);
  if (h == nullptr) return {};
  using LogFn = const char* (*)(int);
  auto fn = reinterpret_cast<LogFn>(dlsym(h, "cmoe_recording_plugin_log"));
  std::vector<std::string> lines;
  if (fn != nullptr) {
    std::istringstream in(fn(clear ? 1 : 0));
    for (std::string l; std::getline(in, l);) lines.push_back(l);
  }
  dlclose(h);
  return lines;
}

// Index of the first line at or after `from` starting with `prefix`, or -1.
int find(const std::vector<std::string>& log, const std::string& prefix, int from = 0) {
  for (int i = from; i < static_cast<int>(log.size()); ++i)
    if (log[i].rfind(prefix, 0) == 0) return i;
  return -1;
}

std::string joined(const std::vector<std::string>& log) {
  std::string s;
  for (const std::string& l : log) absl::StrAppend(&s, "  ", l, "\n");
  return s;
}

TEST(DevicePath, CollectiveIsOrderedAfterComputeStreamWork) {
  parallel::LocalCommunicator boot;
  auto c = parallel::NcclCommunicator::create(boot, 0, "t");
  ASSERT_TRUE(c.ok()) << c.status();
  const std::string comm_stream = absl::StrCat("s", reinterpret_cast<uintptr_t>((*c)->comm_stream()));
  Tensor t = Tensor::from_floats({4}, std::vector<float>{1, 2, 3, 4}).to(kDev);
  plugin_log();
  t.zero_();  // work queued on the compute stream before the collective
  auto w = (*c)->all_reduce_async(t, parallel::ReduceOp::kSum);
  ASSERT_TRUE(w.ok()) << w.status();
  ASSERT_TRUE(w->wait().ok());
  const std::vector<std::string> log = plugin_log();
  const int memset = find(log, "memset legacy");
  const int ready = find(log, "event_record ", memset);
  ASSERT_GE(memset, 0) << joined(log);
  ASSERT_GT(ready, memset) << joined(log);
  EXPECT_NE(log[ready].find(" legacy"), std::string::npos) << "recorded on the compute stream:\n" << joined(log);
  const std::string ready_event = log[ready].substr(13, log[ready].find(' ', 13) - 13);
  const int wait = find(log, absl::StrCat("stream_wait_event ", comm_stream, " ", ready_event), ready);
  const int start = find(log, "nccl_group_start", wait);
  const int op = find(log, absl::StrCat("nccl_all_reduce ", comm_stream), start);
  const int end = find(log, "nccl_group_end", op);
  const int done = find(log, "event_record ", end);
  const int query = find(log, "event_query ", done);
  EXPECT_TRUE(wait > ready && start > wait && op > start && end > op && done > end && query > done) << joined(log);
  EXPECT_NE(log[done].find(comm_stream), std::string::npos) << "completion recorded on the communicator's stream\n"
                                                             << joined(log);
}

TEST(DevicePath, CollectiveFollowsAChosenComputeStream) {
  parallel::LocalCommunicator boot;
  auto c = parallel::NcclCommunicator::create(boot, 0, "t");
  ASSERT_TRUE(c.ok()) << c.status();
  auto s = cuda::Stream::create();
  ASSERT_TRUE(s.ok());
  (*c)->set_compute_stream(s->get());
  Tensor t = Tensor::zeros({8}, DType::kF32, kDev);
  plugin_log();
  ASSERT_TRUE((*c)->all_reduce(t).ok());
  const std::vector<std::string> log = plugin_log();
  const std::string compute = absl::StrCat("s", reinterpret_cast<uintptr_t>(s->get()));
  const int ready = find(log, "event_record ");
  ASSERT_GE(ready, 0) << joined(log);
  EXPECT_NE(log[ready].find(compute), std::string::npos) << joined(log);
}

TEST(DevicePath, CollectiveKeepsItsBuffersUntilComplete) {
  parallel::LocalCommunicator boot;
  auto c = parallel::NcclCommunicator::create(boot, 0, "t");
  ASSERT_TRUE(c.ok()) << c.status();
  cuda::CachingAllocator& alloc = cuda::caching_allocator();
  const size_t before = alloc.bytes_in_use();
  absl::StatusOr<parallel::CommWork> w = absl::InternalError("unset");
  {
    Tensor t = Tensor::zeros({1 << 16}, DType::kF32, kDev);
    w = (*c)->all_reduce_async(t, parallel::ReduceOp::kSum);
    ASSERT_TRUE(w.ok());
  }
  EXPECT_GT(alloc.bytes_in_use(), before) << "the in-flight collective holds its buffer";
  ASSERT_TRUE(w->wait().ok());
  EXPECT_EQ(alloc.bytes_in_use(), before);
}

TEST(DevicePath, StagedCommunicatorMovesDeviceTensorsThroughTheHost) {
  parallel::StagedCommunicator c(std::make_unique<parallel::LocalCommunicator>("g"), kDev);
  Tensor t = Tensor::from_floats({3}, std::vector<float>{1, 2, 3}).to(kDev);
  plugin_log();
  ASSERT_TRUE(c.all_reduce(t).ok());
  const std::vector<std::string> log = plugin_log();
  const int d2h = find(log, "memcpy legacy kind 2"), h2d = find(log, "memcpy legacy kind 1", d2h);
  EXPECT_TRUE(d2h >= 0 && h2d > d2h) << joined(log);
  EXPECT_EQ(t.to_floats(), (std::vector<float>{1, 2, 3}));
}

// Three parameters (one an expert slice), gradients derived from the rank: g = (rank + 1) * v.
std::vector<Param> rank_params(int rank) {
  std::vector<Param> ps;
  const int64_t sizes[] = {5, 17, 3};
  for (int i = 0; i < 3; ++i) {
    std::vector<float> v(static_cast<size_t>(sizes[i]));
    for (int64_t e = 0; e < sizes[i]; ++e) v[e] = static_cast<float>(i * 100 + e);
    ag::Var var(Tensor::from_floats({sizes[i]}, v).to(kDev), true, absl::StrCat("p", i));
    std::vector<float> g(v.size());
    for (size_t e = 0; e < g.size(); ++e) g[e] = static_cast<float>(rank + 1) * v[e];
    var.set_grad(Tensor::from_floats({sizes[i]}, g).to(kDev));
    ps.push_back({var.name(), var, true, i == 1});
  }
  return ps;
}

TEST(DevicePath, GradReducerAveragesDeviceGradients) {
  const int n = g_world->size(), me = g_world->rank();
  for (bool zero1 : {false, true}) {
    SCOPED_TRACE(zero1 ? "ZeRO-1" : "all-reduce");
    auto host = g_world->split(0, me, "dp");
    ASSERT_TRUE(host.ok());
    parallel::StagedCommunicator dp(std::move(*host), kDev);
    std::vector<Param> ps = rank_params(me);
    // Small buckets: the three parameters land in different buckets.
    parallel::GradReducer reducer(&ps, &dp, &dp, n, 8, zero1);
    auto hook = reducer.hook();
    for (size_t i = ps.size(); i-- > 0;) hook(i);  // backward completes them last-first
    ASSERT_TRUE(reducer.finish().ok());
    // mean over ranks of (r + 1) * v = (n + 1) / 2 * v
    const float factor = static_cast<float>(n + 1) / 2.0f;
    for (size_t i = 0; i < ps.size(); ++i) {
      if (zero1 && !reducer.owns(i)) {
        EXPECT_FALSE(ps[i].var.grad().defined());
        continue;
      }
      ASSERT_TRUE(ps[i].var.grad().defined()) << i;
      EXPECT_EQ(ps[i].var.grad().device(), kDev);
      const std::vector<float> g = ps[i].var.grad().to_floats(), v = ps[i].var.value().to_floats();
      for (size_t e = 0; e < g.size(); ++e) EXPECT_FLOAT_EQ(g[e], factor * v[e]) << i << "/" << e;
    }
    if (!zero1) continue;
    // Each owner changes its values; all-gather brings every owner's values to every rank.
    for (size_t i = 0; i < ps.size(); ++i)
      if (reducer.owns(i)) ps[i].var.mutable_value().copy_from(Tensor::full(ps[i].var.shape(), 7.0f + i).to(kDev));
    ASSERT_TRUE(reducer.gather_params().ok());
    for (size_t i = 0; i < ps.size(); ++i)
      for (float x : ps[i].var.value().to_floats()) EXPECT_EQ(x, 7.0f + i) << i;
  }
}

TEST(DevicePath, MultiTensorAdamWAndNormsMatchTheCpu) {
  // Sizes around the chunk size, so chunks split tensors.
  const int64_t C = cuda_geom::kMultiTensorChunk;
  const int64_t sizes[] = {3, C + 5, 1, 2 * C};
  std::vector<Param> cpu_params, dev_params;
  for (int i = 0; i < 4; ++i) {
    Tensor v = Tensor::empty({sizes[i]}, DType::kF32), g = Tensor::empty({sizes[i]}, DType::kF32);
    for (int64_t e = 0; e < sizes[i]; ++e) {
      v.data<float>()[e] = std::sin(0.001f * static_cast<float>(e + i));
      g.data<float>()[e] = std::cos(0.002f * static_cast<float>(e * (i + 1)));
    }
    ag::Var a(v.clone(), true, "p"), b(v.to(kDev), true, "p");
    a.set_grad(g.clone());
    b.set_grad(g.to(kDev));
    cpu_params.push_back({"p", a, i % 2 == 0, false});
    dev_params.push_back({"p", b, i % 2 == 0, false});
  }
  std::vector<Tensor> grads;
  for (const Param& p : dev_params) grads.push_back(p.var.grad());
  const std::vector<double> sq = cuda::sum_squares_multi(grads);
  for (size_t i = 0; i < sq.size(); ++i) {
    double want = 0;
    for (float x : cpu_params[i].var.grad().to_floats()) want += static_cast<double>(x) * x;
    EXPECT_NEAR(sq[i], want, 1e-9 * want) << i;
  }
  AdamW on_cpu(&cpu_params, {}), on_dev(&dev_params, {});
  on_dev.to_device(kDev);
  for (int step = 0; step < 3; ++step) {
    on_cpu.step(1e-2f, 0.5f);
    on_dev.step(1e-2f, 0.5f);
  }
  for (size_t i = 0; i < cpu_params.size(); ++i) {
    const std::vector<float> a = cpu_params[i].var.value().to_floats(), b = dev_params[i].var.value().to_floats();
    for (size_t e = 0; e < a.size(); ++e) ASSERT_NEAR(a[e], b[e], 1e-6f) << i << "/" << e;
    EXPECT_EQ(on_dev.exp_avg()[i].device(), kDev);
  }
}

}  // namespace
}  // namespace cmoe

int main(int argc, char** argv) {
  auto world = cmoe::testing::mpi_test_world(&argc, &argv);
  cmoe::g_world = world.get();
  const absl::Status init = cmoe::cuda::init(0);
  if (!init.ok()) {
    std::fprintf(stderr, "device_path_test needs the recording plugin (CMOE_CUDA_PLUGIN): %s\n",
                 std::string(init.message()).c_str());
    return 1;
  }
  const int rc = cmoe::testing::run_all_tests_on_every_rank(*world);
  world.reset();
  return rc;
}
