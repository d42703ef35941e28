// comm_test.cpp — MpiCommunicator collectives under mpirun (CTest runs it with -np 4; any
// size >= 2 works). Inputs are derived from the rank so every result has a closed form
// (nccl-tests style); each test counts its mismatches, sums the count over all ranks and
// asserts zero on every rank, so a failure on one rank fails the test everywhere. Ranks other
// than 0 print only failures (prefixed with their rank).
#include <cstdio>
#include <numeric>
#include <vector>

#include "gtest/gtest.h"
#include "parallel/backend/mpi.h"
#include "parallel/process_groups.h"
#include "tests/parallel/mpi_gtest.h"

namespace cmoe::parallel {
namespace {

MpiCommunicator* g_world = nullptr;

// Sums `local_errors` over all ranks; every rank then expects zero.
void expect_no_errors_anywhere(int64_t local_errors, const char* what) {
  Tensor t = Tensor::zeros({1}, DType::kI64);
  t.data<int64_t>()[0] = local_errors;
  ASSERT_TRUE(g_world->all_reduce(t).ok());
  int64_t total = t.data<int64_t>()[0];
  EXPECT_EQ(total, 0) << what << ": " << total << " mismatches summed over ranks (" << local_errors
                      << " on world rank " << g_world->rank() << ")";
}

// Counts elements of `t` (f32) differing from expected(i); prints the first few.
template <typename F>
int64_t count_mismatches(const Tensor& t, F expected, const char* what) {
  int64_t bad = 0;
  const float* p = t.data<float>();
  for (int64_t i = 0; i < t.numel(); ++i) {
    float want = static_cast<float>(expected(i));
    if (p[i] != want) {
      if (bad < 3) {
        std::fprintf(stderr, "[rank %d] %s: element %lld is %g, want %g\n", g_world->rank(), what,
                     static_cast<long long>(i), static_cast<double>(p[i]),
                     static_cast<double>(want));
      }
      ++bad;
    }
  }
  return bad;
}

int rank() { return g_world->rank(); }
int size() { return g_world->size(); }

TEST(Comm, AllReduceSumF32) {
  const int64_t n = 1000;
  for (int64_t chunk : {int64_t{INT_MAX}, int64_t{7}}) {  // one call, and the chunked path
    g_world->set_max_chunk_elems(chunk);
    Tensor t = Tensor::empty({10, n / 10}, DType::kF32);
    for (int64_t i = 0; i < n; ++i) t.data<float>()[i] = static_cast<float>(rank() + i);
    ASSERT_TRUE(g_world->all_reduce(t).ok());
    // sum_r (r + i) = n(n-1)/2 + n i
    int64_t p = size();
    expect_no_errors_anywhere(count_mismatches(t, [&](int64_t i) { return p * (p - 1) / 2 + p * i; },
                                               "all_reduce sum f32"),
                              "all_reduce sum f32");
  }
  g_world->set_max_chunk_elems(INT_MAX);
}

TEST(Comm, AllReduceI64KeepsAllBits) {
  Tensor t = Tensor::empty({64}, DType::kI64);
  const int64_t big = int64_t{1} << 40;
  for (int64_t i = 0; i < 64; ++i) t.data<int64_t>()[i] = rank() * big + i;
  ASSERT_TRUE(g_world->all_reduce(t).ok());
  int64_t p = size(), bad = 0;
  for (int64_t i = 0; i < 64; ++i) bad += t.data<int64_t>()[i] != p * (p - 1) / 2 * big + p * i;
  expect_no_errors_anywhere(bad, "all_reduce sum i64");
}

TEST(Comm, AllReduceMaxMin) {
  Tensor mx = Tensor::empty({5}, DType::kF32), mn = Tensor::empty({5}, DType::kI32);
  for (int i = 0; i < 5; ++i) {
    mx.data<float>()[i] = static_cast<float>((rank() * 7 + i) % size());
    mn.data<int32_t>()[i] = rank() - i;
  }
  ASSERT_TRUE(g_world->all_reduce(mx, ReduceOp::kMax).ok());
  ASSERT_TRUE(g_world->all_reduce(mn, ReduceOp::kMin).ok());
  int64_t bad = 0;
  for (int i = 0; i < 5; ++i) {
    bad += mx.data<float>()[i] != static_cast<float>(size() - 1);  // r*7+i covers all residues
    bad += mn.data<int32_t>()[i] != -i;
  }
  expect_no_errors_anywhere(bad, "all_reduce max/min");
}

TEST(Comm, AsyncOpsCompleteInAnyWaitOrder) {
  Tensor a = Tensor::full({256}, static_cast<float>(rank()));
  Tensor b = Tensor::full({256}, 1.0f);
  auto wa = g_world->all_reduce_async(a, ReduceOp::kSum);
  auto wb = g_world->all_reduce_async(b, ReduceOp::kSum);
  ASSERT_TRUE(wa.ok() && wb.ok());
  ASSERT_TRUE(wb->wait().ok());
  ASSERT_TRUE(wa->wait().ok());
  EXPECT_TRUE(wa->done());
  int64_t p = size();
  expect_no_errors_anywhere(count_mismatches(a, [&](int64_t) { return p * (p - 1) / 2; }, "a") +
                                count_mismatches(b, [&](int64_t) { return p; }, "b"),
                            "async all_reduce");
}

TEST(Comm, ReduceScatter) {
  const int64_t m = 6, p = size();
  Tensor in = Tensor::empty({p * m}, DType::kF32), out = Tensor::empty({m}, DType::kF32);
  for (int64_t j = 0; j < p * m; ++j) in.data<float>()[j] = static_cast<float>(rank() * 1000 + j);
  ASSERT_TRUE(g_world->reduce_scatter(out, in).ok());
  // out[i] on rank r = sum_s (1000 s + r m + i)
  expect_no_errors_anywhere(
      count_mismatches(out, [&](int64_t i) { return 1000 * p * (p - 1) / 2 + p * (rank() * m + i); },
                       "reduce_scatter"),
      "reduce_scatter");
}

TEST(Comm, AllGather) {
  const int64_t m = 3, d = 4, p = size();
  Tensor in = Tensor::empty({m, d}, DType::kF32), out = Tensor::empty({p * m, d}, DType::kF32);
  for (int64_t i = 0; i < m * d; ++i) in.data<float>()[i] = static_cast<float>(rank() * 100 + i);
  ASSERT_TRUE(g_world->all_gather(out, in).ok());
  expect_no_errors_anywhere(
      count_mismatches(out, [&](int64_t k) { return (k / (m * d)) * 100 + k % (m * d); }, "all_gather"),
      "all_gather");
}

TEST(Comm, AllToAllExchangesCounts) {
  const int64_t p = size();
  Tensor send = Tensor::empty({p}, DType::kI64), recv = Tensor::empty({p}, DType::kI64);
  for (int64_t j = 0; j < p; ++j) send.data<int64_t>()[j] = 10 * rank() + j;  // from me to j
  ASSERT_TRUE(g_world->all_to_all(recv, send).ok());
  int64_t bad = 0;
  for (int64_t j = 0; j < p; ++j) bad += recv.data<int64_t>()[j] != 10 * j + rank();
  expect_no_errors_anywhere(bad, "all_to_all");
}

// Rows from src to dst: (src + 2 dst) % 3, so some pairs (self included) send nothing.
int64_t rows_between(int64_t src, int64_t dst) { return (src + 2 * dst) % 3; }
// Element c of row k sent from src to dst: exact in f32.
float row_value(int64_t src, int64_t dst, int64_t k, int64_t c) {
  return static_cast<float>(src * 10000 + dst * 1000 + k * 10 + c);
}

TEST(Comm, AllToAllVUnevenWithZeroCounts) {
  const int64_t p = size(), d = 5, me = rank();
  std::vector<int64_t> send_rows(p), recv_rows(p);
  int64_t n_send = 0, n_recv = 0;
  for (int64_t j = 0; j < p; ++j) {
    send_rows[j] = rows_between(me, j);
    n_send += send_rows[j];
  }
  // Receive counts come from the peers, as in MoE dispatch: exchange them first.
  Tensor sc = Tensor::empty({p}, DType::kI64);
  Tensor rc = Tensor::empty({p}, DType::kI64);
  std::copy(send_rows.begin(), send_rows.end(), sc.data<int64_t>());
  ASSERT_TRUE(g_world->all_to_all(rc, sc).ok());
  for (int64_t j = 0; j < p; ++j) {
    recv_rows[j] = rc.data<int64_t>()[j];
    n_recv += recv_rows[j];
  }
  int64_t bad = 0;
  for (int64_t j = 0; j < p; ++j) bad += recv_rows[j] != rows_between(j, me);

  Tensor in = Tensor::empty({n_send, d}, DType::kF32), out = Tensor::empty({n_recv, d}, DType::kF32);
  float* ip = in.data<float>();
  for (int64_t j = 0; j < p; ++j)
    for (int64_t k = 0; k < send_rows[j]; ++k)
      for (int64_t c = 0; c < d; ++c) *ip++ = row_value(me, j, k, c);
  ASSERT_TRUE(g_world->all_to_all_v(out, recv_rows, in, send_rows).ok());
  std::vector<float> want;
  for (int64_t j = 0; j < p; ++j)
    for (int64_t k = 0; k < recv_rows[j]; ++k)
      for (int64_t c = 0; c < d; ++c) want.push_back(row_value(j, me, k, c));
  bad += count_mismatches(out, [&](int64_t i) { return want[static_cast<size_t>(i)]; }, "all_to_all_v");
  expect_no_errors_anywhere(bad, "all_to_all_v uneven");
}

TEST(Comm, AllToAllVNothingSentByRankZero) {
  // Rank 0 sends no rows at all (a (0, d) tensor) and receives one row from everyone else;
  // the other ranks send one row to rank 0 only. bf16 rows move as bits.
  const int64_t p = size(), d = 3, me = rank();
  std::vector<int64_t> send_rows(p, 0), recv_rows(p, 0);
  if (me != 0) send_rows[0] = 1;
  if (me == 0) std::fill(recv_rows.begin() + 1, recv_rows.end(), 1);
  Tensor in = Tensor::empty({me == 0 ? 0 : 1, d}, DType::kBF16);
  Tensor out = Tensor::empty({me == 0 ? p - 1 : 0, d}, DType::kBF16);
  for (int64_t c = 0; c < in.numel(); ++c) in.data<bf16>()[c] = f32_to_bf16(static_cast<float>(me * 4 + c));
  ASSERT_TRUE(g_world->all_to_all_v(out, recv_rows, in, send_rows).ok());
  int64_t bad = 0;
  for (int64_t i = 0; i < out.numel(); ++i) {
    bad += bf16_to_f32(out.data<bf16>()[i]) != static_cast<float>((i / d + 1) * 4 + i % d);
  }
  expect_no_errors_anywhere(bad, "all_to_all_v with empty sides");
}

TEST(Comm, AllToAllVRejectsBadCountsWithoutCommunicating) {
  Tensor in = Tensor::empty({3, 2}, DType::kF32), out = Tensor::empty({3, 2}, DType::kF32);
  std::vector<int64_t> wrong(size(), 0), short_list(1, 3);
  absl::Status s = g_world->all_to_all_v(out, wrong, in, wrong);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("all_to_all_v on communicator 'world'"), std::string::npos) << s;
  EXPECT_EQ(g_world->all_to_all_v(out, short_list, in, short_list).code(),
            absl::StatusCode::kInvalidArgument);
  Tensor b = Tensor::empty({4}, DType::kBF16);
  EXPECT_EQ(g_world->all_reduce(b).code(), absl::StatusCode::kInvalidArgument);
  Tensor t = Tensor::empty({4}, DType::kF32);
  EXPECT_EQ(g_world->send(t, size()).code(), absl::StatusCode::kInvalidArgument);
}

TEST(Comm, RingSendRecvInOneBatch) {
  const int p = size(), me = rank();
  Tensor s = Tensor::full({1000}, static_cast<float>(me)), r = Tensor::empty({1000}, DType::kF32);
  Tensor empty_s = Tensor::empty({0}, DType::kF32), empty_r = Tensor::empty({0}, DType::kF32);
  P2POp ops[] = {{P2POp::kSend, s, (me + 1) % p, 3},
                 {P2POp::kRecv, r, (me + p - 1) % p, 3},
                 {P2POp::kSend, empty_s, (me + 1) % p, 4},  // zero-length messages still match
                 {P2POp::kRecv, empty_r, (me + p - 1) % p, 4}};
  g_world->set_max_chunk_elems(300);  // several messages per tensor, same tag, in order
  ASSERT_TRUE(g_world->batch_p2p(ops).ok());
  g_world->set_max_chunk_elems(INT_MAX);
  expect_no_errors_anywhere(count_mismatches(r, [&](int64_t) { return (me + p - 1) % p; }, "ring"),
                            "ring batch_p2p");
}

TEST(Comm, BlockingSendRecvPairs) {
  // Even ranks send to the next odd rank, which replies with value + 1.
  const int me = rank();
  Tensor t = Tensor::full({17}, static_cast<float>(me));
  int64_t bad = 0;
  if (me % 2 == 0 && me + 1 < size()) {
    ASSERT_TRUE(g_world->send(t, me + 1, 9).ok());
    ASSERT_TRUE(g_world->recv(t, me + 1, 10).ok());
    bad = count_mismatches(t, [&](int64_t) { return me + 1; }, "reply");
  } else if (me % 2 == 1) {
    ASSERT_TRUE(g_world->recv(t, me - 1, 9).ok());
    bad = count_mismatches(t, [&](int64_t) { return me - 1; }, "request");
    t.fill_(static_cast<float>(me));
    ASSERT_TRUE(g_world->send(t, me - 1, 10).ok());
  }
  expect_no_errors_anywhere(bad, "send/recv pairs");
}

TEST(Comm, BroadcastFromLastRank) {
  const int root = size() - 1;
  for (int64_t chunk : {int64_t{INT_MAX}, int64_t{5}}) {
    g_world->set_max_chunk_elems(chunk);
    Tensor t = Tensor::empty({33}, DType::kF32);
    for (int64_t i = 0; i < 33; ++i) t.data<float>()[i] = static_cast<float>(rank() == root ? i * 3 : -1);
    ASSERT_TRUE(g_world->broadcast(t, root).ok());
    expect_no_errors_anywhere(count_mismatches(t, [](int64_t i) { return i * 3; }, "broadcast"),
                              "broadcast");
  }
  g_world->set_max_chunk_elems(INT_MAX);
}

TEST(Comm, BarrierAndSplitByParity) {
  ASSERT_TRUE(g_world->barrier().ok());
  auto sub = g_world->split(rank() % 2, rank(), "parity");
  ASSERT_TRUE(sub.ok()) << sub.status();
  Communicator& c = **sub;
  EXPECT_EQ(c.name(), "parity");
  EXPECT_EQ(c.world_rank(), rank());
  EXPECT_EQ(c.rank(), rank() / 2);
  Tensor t = Tensor::full({1}, static_cast<float>(rank()));
  ASSERT_TRUE(c.all_reduce(t).ok());
  float want = 0;
  for (int r = rank() % 2; r < size(); r += 2) want += static_cast<float>(r);
  expect_no_errors_anywhere(t.data<float>()[0] != want, "split all_reduce");
}

// Each group communicator's members, gathered over the group itself, equal place_rank's list.
int64_t group_mismatches(Communicator& c, const std::vector<int>& want, const char* what) {
  Tensor mine = Tensor::empty({1}, DType::kI32);
  mine.data<int32_t>()[0] = c.world_rank();
  Tensor all = Tensor::empty({c.size()}, DType::kI32);
  if (!c.all_gather(all, mine).ok()) return 1;
  std::vector<int> got(all.data<int32_t>(), all.data<int32_t>() + c.size());
  if (got == want) return 0;
  std::fprintf(stderr, "[rank %d] group %s has other members than place_rank says\n", rank(), what);
  return 1;
}

TEST(Comm, ProcessGroupsMatchPlacement) {
  const int p = size();
  std::vector<ParallelLayout> layouts = {{1, p, 1}, {1, p, p}, {p, 1, 1}};
  if (p % 2 == 0) layouts.push_back({1, p, 2});
  if (p % 4 == 0) layouts.push_back({p / 2, 2, 2});
  if (p % 4 == 0) layouts.push_back({2, p / 2, 2});
  for (const ParallelLayout& l : layouts) {
    auto world = MpiCommunicator::world();
    ASSERT_TRUE(world.ok());
    auto g = make_process_groups(std::move(*world), l);
    ASSERT_TRUE(g.ok()) << g.status();
    int64_t bad = 0;
    bad += group_mismatches(*g->dp, g->place.dp_group, "dp");
    bad += group_mismatches(*g->pp, g->place.pp_group, "pp");
    bad += group_mismatches(*g->ep, g->place.ep_group, "ep");
    bad += group_mismatches(*g->edp, g->place.edp_group, "edp");
    bad += g->dp->rank() != g->place.dp_rank || g->pp->rank() != g->place.pp_rank;
    bad += g->ep->rank() != g->place.ep_rank || g->edp->rank() != g->place.edp_rank;
    expect_no_errors_anywhere(bad, "process groups");
  }
}

TEST(Comm, ProcessGroupsRejectMismatchedWorld) {
  auto world = MpiCommunicator::world();
  ASSERT_TRUE(world.ok());
  auto g = make_process_groups(std::move(*world), ParallelLayout{2, size(), 1});
  ASSERT_FALSE(g.ok());
  EXPECT_NE(g.status().message().find("but the job has " + std::to_string(size())), std::string::npos)
      << g.status();
}

// The traffic counters: one call per operation and the bytes of the data this rank hands to it
// (communicator.h), counted on a fresh split so earlier tests do not show; the async form is
// not counted by itself.
TEST(Comm, CountersCountCallsAndHandedBytesPerKind) {
  auto c = g_world->split(0, rank(), "counted");
  ASSERT_TRUE(c.ok());
  Communicator& g = **c;
  const int n = size(), r = rank();
  Tensor a = Tensor::full({10}, 1.0f);
  ASSERT_TRUE(g.all_reduce(a).ok());
  Tensor rs_in = Tensor::full({3 * n}, 1.0f), rs_out = Tensor::empty({3}, DType::kF32);
  ASSERT_TRUE(g.reduce_scatter(rs_out, rs_in).ok());
  Tensor ag_in = Tensor::full({5}, 1.0f), ag_out = Tensor::empty({5 * n}, DType::kF32);
  ASSERT_TRUE(g.all_gather(ag_out, ag_in).ok());
  Tensor a2a_in = Tensor::zeros({2 * n}, DType::kI64), a2a_out = Tensor::zeros({2 * n}, DType::kI64);
  ASSERT_TRUE(g.all_to_all(a2a_out, a2a_in).ok());
  std::vector<int64_t> counts(n, 1);
  Tensor v_in = Tensor::full({n, 4}, 1.0f), v_out = Tensor::empty({n, 4}, DType::kF32);
  ASSERT_TRUE(g.all_to_all_v(v_out, counts, v_in, counts).ok());
  Tensor b = Tensor::full({6}, 1.0f);
  ASSERT_TRUE(g.broadcast(b, 0).ok());
  // A ring: each rank sends 7 floats to the next and receives from the previous.
  Tensor s = Tensor::full({7}, 1.0f), rcv = Tensor::empty({7}, DType::kF32);
  P2POp ops[2] = {{P2POp::kSend, s, (r + 1) % n, 3}, {P2POp::kRecv, rcv, (r + n - 1) % n, 3}};
  ASSERT_TRUE(g.batch_p2p(ops).ok());
  ASSERT_TRUE(g.barrier().ok());
  auto w = g.all_reduce_async(a, ReduceOp::kSum);
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE(w->wait().ok());
  const CommCounters got = g.counters();
  const int64_t want_bytes[kNumCommKinds] = {40, 12 * n, 20, 16 * n, 16 * n, r == 0 ? 24 : 0, 28, 0};
  int64_t bad = 0;
  for (int k = 0; k < kNumCommKinds; ++k) {
    if (got.calls[k] != 1 || got.bytes[k] != want_bytes[k]) {
      ++bad;
      std::fprintf(stderr, "[rank %d] %s: %lld calls, %lld bytes; want 1, %lld\n", r,
                   comm_kind_name(static_cast<CommKind>(k)), static_cast<long long>(got.calls[k]),
                   static_cast<long long>(got.bytes[k]), static_cast<long long>(want_bytes[k]));
    }
  }
  g.count(CommKind::kAllReduce, 40);  // what a caller of the async form adds
  bad += g.counters().calls[0] != 2 || g.counters().bytes[0] != 80;
  expect_no_errors_anywhere(bad, "traffic counters");
}

}  // namespace
}  // namespace cmoe::parallel

int main(int argc, char** argv) {
  auto world = cmoe::testing::mpi_test_world(&argc, &argv);
  cmoe::parallel::g_world = world.get();
  if (world->size() < 2) {
    std::fprintf(stderr, "comm_test needs at least 2 ranks (run it under mpirun -np 4)\n");
    return 1;
  }
  const int rc = cmoe::testing::run_all_tests_on_every_rank(*world);
  world.reset();
  return rc;
}
