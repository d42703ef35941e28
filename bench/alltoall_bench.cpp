// alltoall_bench.cpp — expert-parallel token exchange through Communicator::all_to_all_v
// against plain MPI_Alltoallv on the same payload, in the same run. Run under MPI:
//
//   mpirun -np 4 --oversubscribe build/bin/alltoall_bench [--tokens 2048] [--d 256]
//          [--experts 16] [--topk 2] [--iters 50]
//
// Payload (cpu-small defaults): each rank routes `tokens` tokens to top-k of `experts`
// experts (uniform, distinct, seeded), experts sharded over all ranks (ep = world) by
// owned_experts; a token goes once to each distinct rank owning one of its choices (the
// dispatch rule), as a row of d f32. One iteration = dispatch (all_to_all_v) + combine (the
// transposed exchange back), the pair each MoE layer runs forward.
//
// Reported per path (formulas in docs/parallelism.md, "Benchmark"): time = median over
// iterations of the slowest rank's time; algbw = S / time with S the mean bytes a rank sends
// in one iteration (self rows included); busbw = algbw * (n - 1) / n. Also the off-rank bytes
// sent per token per MoE layer, and Communicator / MPI time as a percentage.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "core/rng.h"
#include "parallel/backend/mpi.h"
#include "parallel/process_groups.h"

using namespace cmoe;
using namespace cmoe::parallel;

namespace {

struct Args {
  int64_t tokens = 2048, d = 256, experts = 16, topk = 2, iters = 50, warmup = 5;
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i];
    int64_t v = std::atoll(argv[i + 1]);
    if (k == "--tokens") a.tokens = v;
    else if (k == "--d") a.d = v;
    else if (k == "--experts") a.experts = v;
    else if (k == "--topk") a.topk = v;
    else if (k == "--iters") a.iters = v;
    else if (k == "--warmup") a.warmup = v;
    else abort_job(absl::InvalidArgumentError("alltoall_bench: unknown flag " + k));
  }
  if (a.topk > a.experts || a.tokens < 0 || a.d < 1 || a.iters < 1) {
    abort_job(absl::InvalidArgumentError("alltoall_bench: bad sizes"));
  }
  return a;
}

void check(const absl::Status& s) {
  if (!s.ok()) abort_job(s);
}

// Per-iteration slowest-rank times, sorted.
std::vector<double> slowest_rank_times(std::vector<double> t, MPI_Comm comm) {
  MPI_Allreduce(MPI_IN_PLACE, t.data(), static_cast<int>(t.size()), MPI_DOUBLE, MPI_MAX, comm);
  std::sort(t.begin(), t.end());
  return t;
}

}  // namespace

int main(int argc, char** argv) {
  check(mpi_init(&argc, &argv));
  const Args a = parse(argc, argv);
  auto world_or = MpiCommunicator::world("ep");
  check(world_or.status());
  MpiCommunicator& comm = **world_or;
  MPI_Comm raw = MPI_COMM_NULL;  // the plain-MPI path gets its own communicator
  MPI_Comm_dup(MPI_COMM_WORLD, &raw);
  const int n = comm.size(), me = comm.rank();

  // Route: top-k distinct experts per token; one row per distinct destination rank.
  std::vector<int64_t> send_rows(n, 0);
  int64_t remote_rows = 0;
  for (int64_t t = 0; t < a.tokens; ++t) {
    std::vector<int64_t> chosen;
    for (uint64_t draw = 0; static_cast<int64_t>(chosen.size()) < a.topk; ++draw) {
      int64_t e = rng_u32(1234, static_cast<uint64_t>(me), static_cast<uint64_t>(t) * 64 + draw) % a.experts;
      if (std::find(chosen.begin(), chosen.end(), e) == chosen.end()) chosen.push_back(e);
    }
    std::vector<int> dst;
    for (int64_t e : chosen) dst.push_back(expert_owner(a.experts, n, e));
    std::sort(dst.begin(), dst.end());
    dst.erase(std::unique(dst.begin(), dst.end()), dst.end());
    for (int r : dst) {
      ++send_rows[r];
      remote_rows += r != me;
    }
  }
  Tensor sc = Tensor::empty({n}, DType::kI64), rc = Tensor::empty({n}, DType::kI64);
  std::copy(send_rows.begin(), send_rows.end(), sc.data<int64_t>());
  check(comm.all_to_all(rc, sc));
  std::vector<int64_t> recv_rows(rc.data<int64_t>(), rc.data<int64_t>() + n);
  int64_t n_send = 0, n_recv = 0;
  for (int j = 0; j < n; ++j) {
    n_send += send_rows[j];
    n_recv += recv_rows[j];
  }

  Tensor x = Tensor::empty({n_send, a.d}, DType::kF32);  // (rows sorted by destination, d)
  rng_fill_normal(x, 0.0f, 1.0f, 7, static_cast<uint64_t>(me));
  Tensor y = Tensor::zeros({n_recv, a.d}, DType::kF32);   // expert inputs received
  Tensor x2 = Tensor::zeros({n_send, a.d}, DType::kF32);  // combined back
  Tensor y_raw = Tensor::zeros({n_recv, a.d}, DType::kF32);
  Tensor x2_raw = Tensor::zeros({n_send, a.d}, DType::kF32);

  // Plain MPI: counts and displacements in f32 elements, as a user would write it.
  std::vector<int> scnt(n), sdsp(n), rcnt(n), rdsp(n);
  for (int j = 0, s = 0, r = 0; j < n; ++j) {
    scnt[j] = static_cast<int>(send_rows[j] * a.d);
    rcnt[j] = static_cast<int>(recv_rows[j] * a.d);
    sdsp[j] = s;
    rdsp[j] = r;
    s += scnt[j];
    r += rcnt[j];
  }
  auto run_raw = [&] {
    MPI_Alltoallv(x.raw_data(), scnt.data(), sdsp.data(), MPI_FLOAT, y_raw.raw_data(), rcnt.data(),
                  rdsp.data(), MPI_FLOAT, raw);
    MPI_Alltoallv(y_raw.raw_data(), rcnt.data(), rdsp.data(), MPI_FLOAT, x2_raw.raw_data(),
                  scnt.data(), sdsp.data(), MPI_FLOAT, raw);
  };
  auto run_comm = [&] {
    check(comm.all_to_all_v(y, recv_rows, x, send_rows));
    check(comm.all_to_all_v(x2, send_rows, y, recv_rows));
  };

  std::vector<double> t_raw, t_comm;
  for (int64_t it = 0; it < a.warmup + a.iters; ++it) {
    // Alternate which path goes first so neither always runs on a warmer cache.
    for (int k = 0; k < 2; ++k) {
      bool raw_turn = (k == 0) == (it % 2 == 0);
      MPI_Barrier(raw);
      double t0 = MPI_Wtime();
      if (raw_turn) run_raw(); else run_comm();
      double dt = MPI_Wtime() - t0;
      if (it >= a.warmup) (raw_turn ? t_raw : t_comm).push_back(dt);
    }
  }
  // Both paths must deliver the same bytes, and the round trip must return x.
  int64_t bad = std::memcmp(y.raw_data(), y_raw.raw_data(), y.nbytes()) != 0;
  bad += std::memcmp(x2.raw_data(), x.raw_data(), x.nbytes()) != 0;
  bad += std::memcmp(x2_raw.raw_data(), x.raw_data(), x.nbytes()) != 0;
  MPI_Allreduce(MPI_IN_PLACE, &bad, 1, MPI_INT64_T, MPI_SUM, raw);

  std::vector<double> sr = slowest_rank_times(t_raw, raw), sc2 = slowest_rank_times(t_comm, raw);
  double tr = sr[sr.size() / 2], tc = sc2[sc2.size() / 2];
  // S: mean bytes one rank sends per iteration (dispatch + combine, self rows included).
  double bytes_rank = static_cast<double>((n_send + n_recv) * a.d * 4);
  double remote = static_cast<double>(remote_rows);
  MPI_Allreduce(MPI_IN_PLACE, &bytes_rank, 1, MPI_DOUBLE, MPI_SUM, raw);
  MPI_Allreduce(MPI_IN_PLACE, &remote, 1, MPI_DOUBLE, MPI_SUM, raw);
  bytes_rank /= n;
  if (me == 0) {
    double per_token = 2.0 * remote / (static_cast<double>(a.tokens) * n) * static_cast<double>(a.d) * 4;
    std::printf("alltoall_bench: %d ranks, %lld tokens/rank, d=%lld f32, E=%lld top-%lld, %lld iters\n",
                n, static_cast<long long>(a.tokens), static_cast<long long>(a.d),
                static_cast<long long>(a.experts), static_cast<long long>(a.topk),
                static_cast<long long>(a.iters));
    std::printf("  off-rank bytes per token per MoE layer (dispatch + combine): %.0f "
                "(CartesianMoE, sets A and B: %.0f)\n", per_token, 2 * per_token);
    std::printf("  S (mean bytes sent per rank per iteration): %.3f MB\n", bytes_rank / 1e6);
    std::printf("  %-16s %10s %10s %12s %12s\n", "path", "min_us", "median_us", "algbw_GB/s",
                "busbw_GB/s");
    for (int k = 0; k < 2; ++k) {
      const std::vector<double>& s = k == 0 ? sr : sc2;
      double t = s[s.size() / 2];
      double alg = bytes_rank / t / 1e9;
      std::printf("  %-16s %10.1f %10.1f %12.3f %12.3f\n", k == 0 ? "MPI_Alltoallv" : "Communicator",
                  s[0] * 1e6, t * 1e6, alg, alg * (n - 1) / n);
    }
    std::printf("  Communicator bandwidth / MPI_Alltoallv (median): %.1f%%   results %s\n", 100.0 * tr / tc,
                bad == 0 ? "identical" : "DIFFER");
  }
  MPI_Comm_free(&raw);
  world_or->reset();
  return bad == 0 ? 0 : 1;
}
