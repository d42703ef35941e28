// nccl_comm_test.cpp — NcclCommunicator collectives on GPUs under mpirun (CTest runs it with
// -np 1 and -np 2; any size works given one GPU per rank). As in comm_test.cpp, inputs are
// derived from the rank so every result has a closed form computed on the host: each rank
// fills host tensors, copies them to its GPU, runs the operation, copies the result back and
// counts mismatches; the counts are summed over all ranks through the MPI world communicator
// (not through NCCL), so a failure on one rank fails the test everywhere.
//
// NCCL needs a GPU of its own for every rank of a communicator. Where a rank has none, every
// GPU test skips, printing "skipped: no GPU (<the driver's reason>)" or "skipped: needs N
// GPUs, found M", and the job exits with kSkipExitCode, which CTest reports as skipped; the
// test of failing creation runs everywhere.
#include <algorithm>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "core/cuda/cuda_backend.h"
#include "core/cuda/ops.h"
#include "core/cuda/stream.h"
#include "gtest/gtest.h"
#include "parallel/backend/mpi.h"
#include "parallel/backend/nccl.h"
#include "tests/parallel/mpi_gtest.h"

namespace cmoe::parallel {
namespace {

constexpr int kSkipExitCode = 77;  // CTest's SKIP_RETURN_CODE for these jobs

MpiCommunicator* g_world = nullptr;  // CPU: bootstrap and the mismatch counts
NcclCommunicator* g_nccl = nullptr;  // null when the GPU tests skip
std::string g_skip_reason;           // why they skip

// Skips the calling test, printing why, when not every rank has a GPU of its own.
#define CMOE_REQUIRE_NCCL()                               \
  do {                                                    \
    if (g_nccl == nullptr) GTEST_SKIP() << g_skip_reason; \
  } while (0)

int rank() { return g_world->rank(); }
int size() { return g_world->size(); }

// "" when every rank has a GPU of its own; else the skip line, the same on every rank.
std::string gpu_skip_reason() {
  absl::StatusOr<int> gpus = cuda::device_count();
  absl::StatusOr<int> local = mpi_local_rank();
  if (!local.ok()) abort_job(local.status());
  Tensor t = Tensor::empty({2}, DType::kI64);
  t.data<int64_t>()[0] = *local + 1;                // GPUs this node needs, as far as I know
  t.data<int64_t>()[1] = -(gpus.ok() ? *gpus : 0);  // max of -gpus = -(fewest GPUs on a rank)
  if (absl::Status s = g_world->all_reduce(t, ReduceOp::kMax); !s.ok()) abort_job(s);
  const int64_t need = t.data<int64_t>()[0], have = -t.data<int64_t>()[1];
  if (have == 0) {
    return absl::StrCat("skipped: no GPU (",
                        gpus.ok() ? "another rank has none" : std::string(gpus.status().message()),
                        ")");
  }
  if (have < need) return absl::StrCat("skipped: needs ", need, " GPUs, found ", have);
  return "";
}

// Sums `local_errors` over all ranks; every rank then expects zero.
void expect_no_errors_anywhere(int64_t local_errors, const char* what) {
  Tensor t = Tensor::zeros({1}, DType::kI64);
  t.data<int64_t>()[0] = local_errors;
  ASSERT_TRUE(g_world->all_reduce(t).ok());
  const int64_t total = t.data<int64_t>()[0];
  EXPECT_EQ(total, 0) << what << ": " << total << " mismatches summed over ranks (" << local_errors
                      << " on world rank " << rank() << ")";
}

Tensor on_gpu(const Tensor& host) { return host.to(g_nccl->device()); }

// Mismatches between `got` (any device; f32, bf16, i32 or i64) and want(i), exact; prints the
// first few.
template <typename F>
int64_t count_mismatches(const Tensor& got, F want, const char* what) {
  const Tensor h = got.device().is_cpu() ? got : got.to(kCPU);
  int64_t bad = 0;
  for (int64_t i = 0; i < h.numel(); ++i) {
    double v = 0;
    switch (h.dtype()) {
      case DType::kF32: v = h.data<float>()[i]; break;
      case DType::kBF16: v = bf16_to_f32(h.data<bf16>()[i]); break;
      case DType::kI32: v = h.data<int32_t>()[i]; break;
      case DType::kI64: v = static_cast<double>(h.data<int64_t>()[i]); break;
      case DType::kU16: v = h.data<uint16_t>()[i]; break;
    }
    const double w = static_cast<double>(want(i));
    if (v != w) {
      if (bad < 3) {
        std::fprintf(stderr, "[rank %d] %s: element %lld is %.17g, want %.17g\n", rank(), what,
                     static_cast<long long>(i), v, w);
      }
      ++bad;
    }
  }
  return bad;
}

// ---- everywhere ---------------------------------------------------------------------------

TEST(NcclComm, CreateFailsOnEveryRankWhenOneRankCannot) {
  absl::StatusOr<int> gpus = cuda::device_count();
  Tensor t = Tensor::full({1}, gpus.ok() ? static_cast<float>(*gpus) : 0.0f);
  ASSERT_TRUE(g_world->all_reduce(t, ReduceOp::kMin).ok());
  int64_t bad = 0;
  if (t.data<float>()[0] == 0) {
    // Some rank has no GPU: the factory fails on every rank, naming the reason, without hanging.
    auto c = make_gpu_communicator(*g_world, "nogpu");
    bad += c.ok();
    if (!c.ok()) {
      const std::string msg(c.status().message());
      bad += msg.find("ranks could not set up their GPU") == std::string::npos;
      if (!gpus.ok()) bad += msg.find(std::string(gpus.status().message())) == std::string::npos;
      if (rank() == 0) std::printf("make_gpu_communicator without a GPU: %s\n", msg.c_str());
    }
  } else {
    // The last rank asks for a device that does not exist; the others are fine. Every rank
    // returns the error before any of them enters ncclCommInitRankConfig.
    absl::StatusOr<int> mine = local_cuda_device();
    ASSERT_TRUE(mine.ok()) << mine.status();
    const bool culprit = rank() == size() - 1;
    auto c = NcclCommunicator::create(*g_world, culprit ? -1 : *mine, "bad");
    bad += c.ok();
    if (!c.ok()) {
      const std::string msg(c.status().message());
      bad += msg.find("1 of " + std::to_string(size()) + " ranks could not set up their GPU") ==
             std::string::npos;
      bad += c.status().code() !=
             (culprit ? absl::StatusCode::kInvalidArgument : absl::StatusCode::kFailedPrecondition);
      if (bad) std::fprintf(stderr, "[rank %d] %s\n", rank(), c.status().ToString().c_str());
    }
  }
  expect_no_errors_anywhere(bad, "failed creation");
}

// ---- GPU -----------------------------------------------------------------------------------

TEST(NcclComm, ReportsItsGroupAndDevice) {
  CMOE_REQUIRE_NCCL();
  EXPECT_EQ(g_nccl->rank(), rank());
  EXPECT_EQ(g_nccl->size(), size());
  EXPECT_EQ(g_nccl->world_rank(), rank());
  EXPECT_EQ(g_nccl->name(), "world");
  EXPECT_TRUE(g_nccl->device().is_cuda());
  EXPECT_EQ(g_nccl->timeout_s(), g_world->timeout_s());
  for (int r = 0; r < size(); ++r) EXPECT_EQ(g_nccl->world_ranks()[static_cast<size_t>(r)], r);
}

TEST(NcclComm, AllReduceSumEveryDtype) {
  CMOE_REQUIRE_NCCL();
  const int64_t n = 1000, p = size(), r = rank();
  Tensor f = Tensor::empty({10, n / 10}, DType::kF32);
  Tensor i32 = Tensor::empty({n}, DType::kI32);
  Tensor i64 = Tensor::empty({n}, DType::kI64);
  Tensor b16 = Tensor::empty({n}, DType::kBF16);
  const int64_t big = int64_t{1} << 40;
  for (int64_t i = 0; i < n; ++i) {
    f.data<float>()[i] = static_cast<float>(r + i);
    i32.data<int32_t>()[i] = static_cast<int32_t>(r * 1000 - i);
    i64.data<int64_t>()[i] = r * big + i;
    b16.data<bf16>()[i] = f32_to_bf16(static_cast<float>((r + i) % 8));  // sums stay exact
  }
  Tensor df = on_gpu(f), d32 = on_gpu(i32), d64 = on_gpu(i64), db = on_gpu(b16);
  for (Tensor* t : {&df, &d32, &d64, &db}) ASSERT_TRUE(g_nccl->all_reduce(*t).ok()) << t->str();
  const int64_t rsum = p * (p - 1) / 2;
  int64_t bad = count_mismatches(
      df, [&](int64_t i) { return rsum + p * i; }, "f32");
  bad += count_mismatches(
      d32, [&](int64_t i) { return 1000 * rsum - p * i; }, "i32");
  bad += count_mismatches(
      d64, [&](int64_t i) { return rsum * big + p * i; }, "i64");
  bad += count_mismatches(
      db,
      [&](int64_t i) {
        int64_t s = 0;
        for (int64_t q = 0; q < p; ++q) s += (q + i) % 8;
        return s;
      },
      "bf16");
  expect_no_errors_anywhere(bad, "all_reduce sum");
}

TEST(NcclComm, AllReduceMaxMin) {
  CMOE_REQUIRE_NCCL();
  Tensor mx = Tensor::empty({5}, DType::kF32), mn = Tensor::empty({5}, DType::kI32);
  for (int i = 0; i < 5; ++i) {
    mx.data<float>()[i] = static_cast<float>((rank() * 7 + i) % size());
    mn.data<int32_t>()[i] = rank() - i;
  }
  Tensor dmx = on_gpu(mx), dmn = on_gpu(mn);
  ASSERT_TRUE(g_nccl->all_reduce(dmx, ReduceOp::kMax).ok());
  ASSERT_TRUE(g_nccl->all_reduce(dmn, ReduceOp::kMin).ok());
  int64_t bad = count_mismatches(
      dmx,
      [&](int64_t i) {
        int64_t m = 0;
        for (int64_t q = 0; q < size(); ++q) m = std::max(m, (q * 7 + i) % size());
        return m;
      },
      "max");
  bad += count_mismatches(
      dmn, [](int64_t i) { return -i; }, "min");
  expect_no_errors_anywhere(bad, "all_reduce max/min");
}

TEST(NcclComm, AsyncAllReduceThenWaitInAnyOrder) {
  CMOE_REQUIRE_NCCL();
  Tensor a = on_gpu(Tensor::full({1 << 16}, static_cast<float>(rank())));
  Tensor b = on_gpu(Tensor::full({256}, 1.0f));
  auto wa = g_nccl->all_reduce_async(a, ReduceOp::kSum);
  auto wb = g_nccl->all_reduce_async(b, ReduceOp::kSum);
  ASSERT_TRUE(wa.ok() && wb.ok());
  (void)wa->done();  // never blocks; may be true or false here
  ASSERT_TRUE(wb->wait().ok());
  ASSERT_TRUE(wa->wait().ok());
  EXPECT_TRUE(wa->done());
  EXPECT_TRUE(wb->done());
  const int64_t p = size();
  expect_no_errors_anywhere(count_mismatches(
                                a, [&](int64_t) { return p * (p - 1) / 2; }, "a") +
                                count_mismatches(
                                    b, [&](int64_t) { return p; }, "b"),
                            "async all_reduce");
}

TEST(NcclComm, ComputeStreamOrdersTheInputs) {
  CMOE_REQUIRE_NCCL();
  // The input is produced by ~20 kernels on a stream of our own; the all_reduce, posted right
  // after them without a host synchronisation, must see their result.
  absl::StatusOr<cuda::Stream> stream = cuda::Stream::create();
  ASSERT_TRUE(stream.ok()) << stream.status();
  const int64_t n = int64_t{1} << 22;
  Tensor a = on_gpu(Tensor::full({n}, static_cast<float>(rank())));
  Tensor one = on_gpu(Tensor::full({n}, 1.0f));
  Tensor x = Tensor::empty({n}, DType::kF32, g_nccl->device());
  cuda::add(x, a, one, stream->get());
  for (int k = 1; k < 20; ++k) cuda::add(x, x, one, stream->get());  // x = rank + 20
  g_nccl->set_compute_stream(stream->get());
  absl::Status st = g_nccl->all_reduce(x);
  g_nccl->set_compute_stream(cuda::kLegacyStream);
  ASSERT_TRUE(st.ok()) << st;
  const int64_t p = size();
  expect_no_errors_anywhere(
      count_mismatches(
          x, [&](int64_t) { return p * (p - 1) / 2 + 20 * p; }, "all_reduce after kernels"),
      "compute-stream ordering");
}

TEST(NcclComm, ReduceScatter) {
  CMOE_REQUIRE_NCCL();
  const int64_t m = 6, p = size();
  Tensor in = Tensor::empty({p * m}, DType::kF32);
  for (int64_t j = 0; j < p * m; ++j) in.data<float>()[j] = static_cast<float>(rank() * 1000 + j);
  Tensor out = Tensor::empty({m}, DType::kF32, g_nccl->device());
  ASSERT_TRUE(g_nccl->reduce_scatter(out, on_gpu(in)).ok());
  // out[i] on rank r = sum_s (1000 s + r m + i)
  expect_no_errors_anywhere(
      count_mismatches(
          out, [&](int64_t i) { return 1000 * p * (p - 1) / 2 + p * (rank() * m + i); },
          "reduce_scatter"),
      "reduce_scatter");
}

TEST(NcclComm, AllGatherF32AndBf16Bits) {
  CMOE_REQUIRE_NCCL();
  const int64_t m = 3, d = 4, p = size();
  Tensor in = Tensor::empty({m, d}, DType::kF32);
  Tensor bits = Tensor::empty({m, d}, DType::kBF16);  // moved as bytes: NaN bits survive
  for (int64_t i = 0; i < m * d; ++i) {
    in.data<float>()[i] = static_cast<float>(rank() * 100 + i);
    bits.data<bf16>()[i] =
        bf16{static_cast<uint16_t>(0x7f81 + rank() * 16 + i)};  // signalling NaNs
  }
  Tensor out = Tensor::empty({p * m, d}, DType::kF32, g_nccl->device());
  Tensor out_bits = Tensor::empty({p * m, d}, DType::kBF16, g_nccl->device());
  ASSERT_TRUE(g_nccl->all_gather(out, on_gpu(in)).ok());
  ASSERT_TRUE(g_nccl->all_gather(out_bits, on_gpu(bits)).ok());
  int64_t bad = count_mismatches(
      out, [&](int64_t k) { return (k / (m * d)) * 100 + k % (m * d); }, "all_gather");
  const Tensor hb = out_bits.to(kCPU);
  for (int64_t k = 0; k < p * m * d; ++k) {
    bad +=
        hb.data<bf16>()[k].bits != static_cast<uint16_t>(0x7f81 + (k / (m * d)) * 16 + k % (m * d));
  }
  expect_no_errors_anywhere(bad, "all_gather");
}

TEST(NcclComm, AllToAllExchangesCounts) {
  CMOE_REQUIRE_NCCL();
  const int64_t p = size();
  Tensor send = Tensor::empty({p}, DType::kI64);
  for (int64_t j = 0; j < p; ++j) send.data<int64_t>()[j] = 10 * rank() + j;  // from me to j
  Tensor recv = Tensor::empty({p}, DType::kI64, g_nccl->device());
  ASSERT_TRUE(g_nccl->all_to_all(recv, on_gpu(send)).ok());
  expect_no_errors_anywhere(count_mismatches(
                                recv, [&](int64_t j) { return 10 * j + rank(); }, "all_to_all"),
                            "all_to_all");
}

// Rows from src to dst: (src + 2 dst) % 3, so some pairs (self included) send nothing.
int64_t rows_between(int64_t src, int64_t dst) { return (src + 2 * dst) % 3; }
// Element c of row k sent from src to dst: exact in f32.
float row_value(int64_t src, int64_t dst, int64_t k, int64_t c) {
  return static_cast<float>(src * 10000 + dst * 1000 + k * 10 + c);
}

TEST(NcclComm, AllToAllVUnevenWithZeroCounts) {
  CMOE_REQUIRE_NCCL();
  const int64_t p = size(), d = 5, me = rank();
  std::vector<int64_t> send_rows(static_cast<size_t>(p)), recv_rows(static_cast<size_t>(p));
  Tensor sc = Tensor::empty({p}, DType::kI64);
  int64_t n_send = 0, n_recv = 0;
  for (int64_t j = 0; j < p; ++j) {
    send_rows[static_cast<size_t>(j)] = rows_between(me, j);
    sc.data<int64_t>()[j] = send_rows[static_cast<size_t>(j)];
    n_send += send_rows[static_cast<size_t>(j)];
  }
  // Receive counts come from the peers, as in MoE dispatch: exchanged first, on the GPU.
  Tensor rc = Tensor::empty({p}, DType::kI64, g_nccl->device());
  ASSERT_TRUE(g_nccl->all_to_all(rc, on_gpu(sc)).ok());
  const Tensor rch = rc.to(kCPU);
  int64_t bad = 0;
  for (int64_t j = 0; j < p; ++j) {
    recv_rows[static_cast<size_t>(j)] = rch.data<int64_t>()[j];
    n_recv += recv_rows[static_cast<size_t>(j)];
    bad += recv_rows[static_cast<size_t>(j)] != rows_between(j, me);
  }
  Tensor in = Tensor::empty({n_send, d}, DType::kF32);
  float* ip = in.data<float>();
  for (int64_t j = 0; j < p; ++j)
    for (int64_t k = 0; k < send_rows[static_cast<size_t>(j)]; ++k)
      for (int64_t c = 0; c < d; ++c) *ip++ = row_value(me, j, k, c);
  Tensor out = Tensor::empty({n_recv, d}, DType::kF32, g_nccl->device());
  ASSERT_TRUE(g_nccl->all_to_all_v(out, recv_rows, on_gpu(in), send_rows).ok());
  std::vector<float> want;
  for (int64_t j = 0; j < p; ++j)
    for (int64_t k = 0; k < recv_rows[static_cast<size_t>(j)]; ++k)
      for (int64_t c = 0; c < d; ++c) want.push_back(row_value(j, me, k, c));
  bad += count_mismatches(
      out, [&](int64_t i) { return want[static_cast<size_t>(i)]; }, "all_to_all_v");
  expect_no_errors_anywhere(bad, "all_to_all_v uneven");
}

TEST(NcclComm, AllToAllVNothingSentByRankZero) {
  CMOE_REQUIRE_NCCL();
  // Rank 0 sends no rows at all (a (0, d) tensor) and receives one row from everyone else;
  // the other ranks send one row to rank 0 only. bf16 rows move as bytes.
  const int64_t p = size(), d = 3, me = rank();
  std::vector<int64_t> send_rows(static_cast<size_t>(p), 0), recv_rows(static_cast<size_t>(p), 0);
  if (me != 0) send_rows[0] = 1;
  if (me == 0) std::fill(recv_rows.begin() + 1, recv_rows.end(), 1);
  Tensor in = Tensor::empty({me == 0 ? 0 : 1, d}, DType::kBF16);
  for (int64_t c = 0; c < in.numel(); ++c)
    in.data<bf16>()[c] = f32_to_bf16(static_cast<float>(me * 4 + c));
  Tensor out = Tensor::empty({me == 0 ? p - 1 : 0, d}, DType::kBF16, g_nccl->device());
  ASSERT_TRUE(g_nccl->all_to_all_v(out, recv_rows, on_gpu(in), send_rows).ok());
  expect_no_errors_anywhere(
      count_mismatches(
          out, [&](int64_t i) { return (i / d + 1) * 4 + i % d; }, "empty sides"),
      "all_to_all_v with empty sides");
}

TEST(NcclComm, BroadcastFromLastRank) {
  CMOE_REQUIRE_NCCL();
  const int root = size() - 1;
  Tensor t = Tensor::empty({33}, DType::kF32);
  for (int64_t i = 0; i < 33; ++i)
    t.data<float>()[i] = static_cast<float>(rank() == root ? i * 3 : -1);
  Tensor d = on_gpu(t);
  ASSERT_TRUE(g_nccl->broadcast(d, root).ok());
  expect_no_errors_anywhere(count_mismatches(
                                d, [](int64_t i) { return i * 3; }, "broadcast"),
                            "broadcast");
}

TEST(NcclComm, RingSendRecvInOneBatch) {
  CMOE_REQUIRE_NCCL();
  // Two messages to the same peer pair in posting order (NCCL has no tags), plus zero-length
  // ones, which both sides skip. With one rank the ring is a send to self.
  const int p = size(), me = rank(), next = (me + 1) % p, prev = (me + p - 1) % p;
  Tensor s = on_gpu(Tensor::full({1000}, static_cast<float>(me)));
  Tensor s2 = on_gpu(Tensor::full({7}, static_cast<float>(100 + me)));
  Tensor r = Tensor::empty({1000}, DType::kF32, g_nccl->device());
  Tensor r2 = Tensor::empty({7}, DType::kF32, g_nccl->device());
  Tensor empty_s = Tensor::empty({0}, DType::kF32, g_nccl->device());
  Tensor empty_r = Tensor::empty({0}, DType::kF32, g_nccl->device());
  P2POp ops[] = {{P2POp::kSend, s, next, 3},       {P2POp::kRecv, r, prev, 3},
                 {P2POp::kSend, empty_s, next, 4}, {P2POp::kRecv, empty_r, prev, 4},
                 {P2POp::kSend, s2, next, 5},      {P2POp::kRecv, r2, prev, 5}};
  ASSERT_TRUE(g_nccl->batch_p2p(ops).ok());
  expect_no_errors_anywhere(count_mismatches(
                                r, [&](int64_t) { return prev; }, "ring") +
                                count_mismatches(
                                    r2, [&](int64_t) { return 100 + prev; }, "ring 2"),
                            "ring batch_p2p");
}

TEST(NcclComm, BlockingSendRecvPairs) {
  CMOE_REQUIRE_NCCL();
  // Even ranks send to the next odd rank, which replies with its own rank.
  const int me = rank();
  Tensor t = on_gpu(Tensor::full({17}, static_cast<float>(me)));
  int64_t bad = 0;
  if (me % 2 == 0 && me + 1 < size()) {
    ASSERT_TRUE(g_nccl->send(t, me + 1, 9).ok());
    ASSERT_TRUE(g_nccl->recv(t, me + 1, 10).ok());
    bad = count_mismatches(
        t, [&](int64_t) { return me + 1; }, "reply");
  } else if (me % 2 == 1) {
    ASSERT_TRUE(g_nccl->recv(t, me - 1, 9).ok());
    bad = count_mismatches(
        t, [&](int64_t) { return me - 1; }, "request");
    Tensor mine = on_gpu(Tensor::full({17}, static_cast<float>(me)));
    ASSERT_TRUE(g_nccl->send(mine, me - 1, 10).ok());
  }
  expect_no_errors_anywhere(bad, "send/recv pairs");
}

TEST(NcclComm, BarrierAndSplitByParity) {
  CMOE_REQUIRE_NCCL();
  ASSERT_TRUE(g_nccl->barrier().ok());
  const double timeout = g_nccl->timeout_s();
  g_nccl->set_timeout_s(77);
  auto sub = g_nccl->split(rank() % 2, rank(), "parity");
  g_nccl->set_timeout_s(timeout);
  ASSERT_TRUE(sub.ok()) << sub.status();
  Communicator& c = **sub;
  EXPECT_EQ(c.name(), "parity");
  EXPECT_EQ(c.world_rank(), rank());
  EXPECT_EQ(c.rank(), rank() / 2);
  EXPECT_EQ(c.size(), (size() - rank() % 2 + 1) / 2);
  EXPECT_EQ(c.timeout_s(), 77);
  EXPECT_EQ(c.device(), g_nccl->device());
  Tensor t = on_gpu(Tensor::full({1}, static_cast<float>(rank())));
  ASSERT_TRUE(c.all_reduce(t).ok());
  ASSERT_TRUE(c.barrier().ok());
  float want = 0;
  for (int r = rank() % 2; r < size(); r += 2) want += static_cast<float>(r);
  expect_no_errors_anywhere(count_mismatches(
                                t, [&](int64_t) { return want; }, "split"),
                            "split all_reduce");
}

TEST(NcclComm, SplitOrdersByKeyThenRank) {
  CMOE_REQUIRE_NCCL();
  // Keys in reverse: the new order is reversed. Equal keys: rank order.
  for (bool reverse : {true, false}) {
    auto sub = g_nccl->split(0, reverse ? size() - rank() : 5, reverse ? "reversed" : "same-key");
    ASSERT_TRUE(sub.ok()) << sub.status();
    const int want_rank = reverse ? size() - 1 - rank() : rank();
    int64_t bad = (*sub)->rank() != want_rank;
    // Gather world ranks over the new group: they come back in its rank order.
    Tensor mine = on_gpu(Tensor::from_ints({1}, std::vector<int32_t>{rank()}));
    Tensor all = Tensor::empty({size()}, DType::kI32, g_nccl->device());
    ASSERT_TRUE((*sub)->all_gather(all, mine).ok());
    bad += count_mismatches(
        all, [&](int64_t i) { return reverse ? size() - 1 - i : i; }, "members");
    expect_no_errors_anywhere(bad, reverse ? "split reversed" : "split same key");
  }
}

TEST(NcclComm, RejectsBadArgumentsAndStaysUsable) {
  CMOE_REQUIRE_NCCL();
  Tensor cpu = Tensor::full({4}, 1.0f);
  absl::Status s = g_nccl->all_reduce(cpu);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("wrong device"), std::string::npos) << s;
  EXPECT_NE(s.message().find("all_reduce on communicator 'world'"), std::string::npos) << s;
  Tensor u16 = Tensor::empty({4}, DType::kU16, g_nccl->device());
  EXPECT_EQ(g_nccl->all_reduce(u16).code(), absl::StatusCode::kInvalidArgument);
  Tensor gpu = on_gpu(cpu);
  EXPECT_EQ(g_nccl->broadcast(cpu, 0).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(g_nccl->send(gpu, size()).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(g_nccl->send(gpu, 0, -1).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(g_nccl->broadcast(gpu, -1).code(), absl::StatusCode::kInvalidArgument);
  std::vector<int64_t> wrong(static_cast<size_t>(size()), 0);
  Tensor rows = Tensor::empty({3, 2}, DType::kF32, g_nccl->device());
  EXPECT_EQ(g_nccl->all_to_all_v(rows, wrong, rows, wrong).code(),
            absl::StatusCode::kInvalidArgument);
  Tensor out = Tensor::empty({size() * 4 + 1}, DType::kF32, g_nccl->device());
  EXPECT_EQ(g_nccl->all_gather(out, gpu).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(g_nccl->split(-1, 0, "bad").status().code(), absl::StatusCode::kInvalidArgument);
  // None of that reached NCCL: the communicator still works.
  ASSERT_TRUE(g_nccl->all_reduce(gpu).ok());
  expect_no_errors_anywhere(count_mismatches(
                                gpu, [&](int64_t) { return size(); }, "after errors"),
                            "usable after argument errors");
}

TEST(NcclComm, ZeroSizedOperationsAreNoOps) {
  CMOE_REQUIRE_NCCL();
  Tensor e = Tensor::empty({0, 4}, DType::kF32, g_nccl->device());
  Tensor eg = Tensor::empty({0, 4}, DType::kF32, g_nccl->device());
  EXPECT_TRUE(g_nccl->all_reduce(e).ok());
  EXPECT_TRUE(g_nccl->broadcast(e, 0).ok());
  EXPECT_TRUE(g_nccl->all_gather(eg, e).ok());
  std::vector<int64_t> zeros(static_cast<size_t>(size()), 0);
  EXPECT_TRUE(g_nccl->all_to_all_v(e, zeros, e, zeros).ok());
  ASSERT_TRUE(g_nccl->barrier().ok());
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
  std::unique_ptr<cmoe::parallel::Communicator> nccl;
  g_skip_reason = gpu_skip_reason();
  if (g_skip_reason.empty()) {
    auto c = make_gpu_communicator(*g_world, "world");
    if (!c.ok()) abort_job(c.status());
    nccl = std::move(*c);
    g_nccl = static_cast<NcclCommunicator*>(nccl.get());
  } else if (g_world->rank() == 0) {
    std::printf("nccl_comm_test: %s: the GPU tests skip\n", g_skip_reason.c_str());
  }
  cmoe::testing::print_failures_only_off_rank0(g_world->rank());
  const int failed = RUN_ALL_TESTS() != 0;
  const int skipped = ::testing::UnitTest::GetInstance()->skipped_test_count() > 0;
  cmoe::Tensor t = cmoe::Tensor::empty({2}, cmoe::DType::kI32);
  t.data<int32_t>()[0] = failed;
  t.data<int32_t>()[1] = skipped;
  if (!g_world->all_reduce(t).ok()) abort_job(absl::InternalError("final all_reduce failed"));
  g_nccl = nullptr;
  nccl.reset();
  world->reset();
  if (t.data<int32_t>()[0] != 0) return 1;
  return t.data<int32_t>()[1] != 0 ? kSkipExitCode : 0;
}
