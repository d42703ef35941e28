// communicator.h — the one interface every parallel strategy talks to.
//
// A Communicator is a group of ranks plus collectives and point-to-point transfers over
// Tensors. Backends (parallel/backend/): MpiCommunicator (CPU tensors, Open MPI),
// NcclCommunicator (CUDA tensors, one GPU per rank, bootstrapped over MPI; built with CUDA and
// NCCL), LocalCommunicator (one process, size 1, identity semantics, CPU or CUDA tensors).
// device() says which tensors a backend moves; make_communicator (below) chooses the backend.
//
// Every operation has an async form returning a CommWork (so data-parallel gradient buckets
// and pipeline sends can overlap compute) and a blocking form (= async + wait). Tensors are
// views (core/tensor.h): an output is written through the handle passed in, so a slice0()
// of a larger buffer may be passed directly. A CommWork keeps its tensors' storage alive
// until it completes; the caller must not touch them before wait() returns.
//
// Errors: wrong shapes, dtypes or devices return InvalidArgument; a backend failure returns
// the backend's message (Internal). No operation waits forever: each has a deadline
// (timeout_s(), default CMOE_COMM_TIMEOUT_S or kDefaultCommTimeoutS); when it passes, the
// backend prints rank, host, operation, group and elapsed time and aborts the whole job.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/check.h"
#include "core/tensor.h"

namespace cmoe::parallel {

inline constexpr double kDefaultCommTimeoutS = 300.0;

// Timeout for communicators created from now on: CMOE_COMM_TIMEOUT_S (seconds, > 0) if set
// and valid, else kDefaultCommTimeoutS. An invalid value is reported once on stderr.
double default_comm_timeout_s();

enum class ReduceOp { kSum, kMax, kMin };
const char* reduce_op_name(ReduceOp op);

// Backend-specific state of one in-flight operation.
class CommWorkImpl {
 public:
  virtual ~CommWorkImpl() = default;
  virtual absl::Status wait() = 0;  // to completion or deadline (which aborts the job)
  virtual bool test() = 0;          // true once complete; never blocks
};

// Move-only handle on an in-flight operation. Destroying one that was never waited waits
// for it (the transfer must finish before its buffers may be reused) and drops the status.
class CommWork {
 public:
  CommWork() = default;  // an already-complete no-op
  explicit CommWork(std::unique_ptr<CommWorkImpl> impl) : impl_(std::move(impl)) {}
  CommWork(CommWork&&) = default;
  CommWork& operator=(CommWork&& o) noexcept;
  CommWork(const CommWork&) = delete;
  CommWork& operator=(const CommWork&) = delete;
  ~CommWork();

  absl::Status wait();
  bool done();

 private:
  std::unique_ptr<CommWorkImpl> impl_;
};

// The kinds of operation the traffic counters tell apart (Communicator::counters()).
enum class CommKind { kAllReduce, kReduceScatter, kAllGather, kAllToAll, kAllToAllV, kBroadcast, kSendRecv, kBarrier };
inline constexpr int kNumCommKinds = 8;
// "all_reduce", "reduce_scatter", "all_gather", "all_to_all", "all_to_all_v", "broadcast",
// "send_recv", "barrier": the names metrics.jsonl and `cmoe plan` use.
const char* comm_kind_name(CommKind kind);

// Per kind: operations this rank posted, and the bytes of data it handed to them — its input
// buffer: all_reduce buf, reduce_scatter in (group size x the output), all_gather in (its own
// part), all_to_all and all_to_all_v in (rows addressed to itself included), broadcast buf on
// the root (0 elsewhere), send_recv the tensors it sends (receives count 0), barrier 0.
// The bytes that cross between ranks follow from these and the group size (docs/planner.md).
struct CommCounters {
  std::array<int64_t, kNumCommKinds> calls{}, bytes{};
  int64_t total_bytes() const;
  CommCounters& operator+=(const CommCounters& o);
  CommCounters& operator-=(const CommCounters& o);
};

// One half of a point-to-point exchange for batch_p2p: send `tensor` to `peer`, or receive
// into it from `peer` (group ranks). Matching pairs use the same tag.
struct P2POp {
  enum Kind { kSend, kRecv };
  Kind kind;
  Tensor tensor;
  int peer;
  int tag = 0;
};

class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int rank() const = 0;  // 0 <= rank < size, within this group
  virtual int size() const = 0;
  virtual int world_rank() const = 0;           // this process in the whole job
  virtual const std::string& name() const = 0;  // "world", "dp", "ep", ... (for messages)
  virtual Device device() const = 0;            // the device of the tensors it moves
  virtual double timeout_s() const = 0;
  virtual void set_timeout_s(double seconds) = 0;

  // A new communicator over the ranks passing the same `color`, ordered by `key` (then by
  // rank), like MPI_Comm_split. Collective over this group.
  virtual absl::StatusOr<std::unique_ptr<Communicator>> split(int color, int key,
                                                              const std::string& name) = 0;

  // --- async forms (the backend contract) ---
  // buf[i] = op_r buf_r[i] (in place); buf: any shape, f32 / i32 / i64 (and bf16 on CUDA
  // tensors: NCCL reduces bf16 natively; MPI has no bf16 type, so CPU data reduces in f32).
  virtual absl::StatusOr<CommWork> all_reduce_async(const Tensor& buf, ReduceOp op) = 0;
  // out[i] = op_r in_r[rank * n + i]; in: (size * n, ...) viewed flat, out: n elements;
  // dtypes as all_reduce.
  virtual absl::StatusOr<CommWork> reduce_scatter_async(const Tensor& out, const Tensor& in,
                                                        ReduceOp op) = 0;
  // out = concat_r in_r along dim 0; in: (n, ...), out: (size * n, ...).
  virtual absl::StatusOr<CommWork> all_gather_async(const Tensor& out, const Tensor& in) = 0;
  // out[rows of block j] = in_j[rows of block rank]: dim 0 split into size equal blocks.
  virtual absl::StatusOr<CommWork> all_to_all_async(const Tensor& out, const Tensor& in) = 0;
  // Variable all-to-all in dim-0 rows (a row = numel / dim(0) elements): in holds
  // send_rows[0] rows for rank 0, then send_rows[1] for rank 1, ...; out receives
  // recv_rows[j] rows from rank j, in rank order. recv_rows on rank r must equal every
  // sender's send_rows[r] (exchange counts first with all_to_all). Zero counts are fine.
  // in: (sum send_rows, ...), out: (sum recv_rows, ...), same row size and dtype.
  virtual absl::StatusOr<CommWork> all_to_all_v_async(const Tensor& out,
                                                      std::span<const int64_t> recv_rows,
                                                      const Tensor& in,
                                                      std::span<const int64_t> send_rows) = 0;
  // buf = buf_root on every rank.
  virtual absl::StatusOr<CommWork> broadcast_async(const Tensor& buf, int root) = 0;
  // All sends and receives posted together, completed together (pipeline stages exchange
  // activations and gradients this way without ordering deadlocks).
  virtual absl::StatusOr<CommWork> batch_p2p_async(std::span<const P2POp> ops) = 0;
  virtual absl::StatusOr<CommWork> barrier_async() = 0;

  // --- blocking forms ---
  absl::Status all_reduce(const Tensor& buf, ReduceOp op = ReduceOp::kSum);
  absl::Status reduce_scatter(const Tensor& out, const Tensor& in, ReduceOp op = ReduceOp::kSum);
  absl::Status all_gather(const Tensor& out, const Tensor& in);
  absl::Status all_to_all(const Tensor& out, const Tensor& in);
  absl::Status all_to_all_v(const Tensor& out, std::span<const int64_t> recv_rows,
                            const Tensor& in, std::span<const int64_t> send_rows);
  absl::Status broadcast(const Tensor& buf, int root);
  absl::Status send(const Tensor& t, int dst, int tag = 0);
  absl::Status recv(const Tensor& t, int src, int tag = 0);
  absl::Status batch_p2p(std::span<const P2POp> ops);
  absl::Status barrier();

  // --- traffic counters (always on: two relaxed atomic adds per operation) ---
  // The blocking forms count themselves; a caller of an async form counts what it posts with
  // count() (GradReducer does), so every operation is counted once.
  void count(CommKind kind, int64_t bytes) {
    if (uncounted_.load(std::memory_order_relaxed)) return;
    const auto k = static_cast<size_t>(kind);
    calls_[k].fetch_add(1, std::memory_order_relaxed);
    bytes_[k].fetch_add(bytes, std::memory_order_relaxed);
  }
  // Totals since this communicator was made (a step's traffic is the difference of two).
  CommCounters counters() const;
  // While set, operations are not counted: the metrics' own reporting collectives (routing
  // statistics, every stage's router reports) are not training traffic, so the counters hold
  // exactly what `cmoe plan` models (docs/metrics.md).
  void set_uncounted(bool on) { uncounted_.store(on, std::memory_order_relaxed); }

 private:
  std::array<std::atomic<int64_t>, kNumCommKinds> calls_{}, bytes_{};
  std::atomic<bool> uncounted_{false};
};

// A barrier whose waiting ranks sleep between polls (every 2 ms) instead of spinning inside the
// library, so they leave their cores to a rank that is measuring the machine meanwhile. For
// measurements only: it adds up to 2 ms.
absl::Status sleeping_barrier(Communicator& c);

// Argument checks shared by all backends (InvalidArgument naming op, group and shapes).
namespace comm_check {
absl::Status device_is(const Communicator& c, const char* op, const Tensor& t);
// f32, i32 or i64; also bf16 when `bf16_ok` (the backends moving CUDA tensors).
absl::Status reducible(const Communicator& c, const char* op, const Tensor& t, bool bf16_ok = false);
absl::Status reduce_scatter_shapes(const Communicator& c, const Tensor& out, const Tensor& in,
                                   bool bf16_ok = false);
absl::Status all_gather_shapes(const Communicator& c, const Tensor& out, const Tensor& in);
absl::Status all_to_all_shapes(const Communicator& c, const Tensor& out, const Tensor& in);
// Also returns each tensor's row size (elements per dim-0 row) through row_elems.
absl::Status all_to_all_v_shapes(const Communicator& c, const Tensor& out,
                                 std::span<const int64_t> recv_rows, const Tensor& in,
                                 std::span<const int64_t> send_rows, int64_t* row_elems);
absl::Status peer(const Communicator& c, const char* op, int peer);
}  // namespace comm_check

// ---- the factory: every communicator of a job comes from make_communicator ----
//
// Which backend moves a job's tensors:
//   kAuto   host tensors: MPI under an MPI launcher (mpirun/srun set OMPI_COMM_WORLD_SIZE,
//           PMI_SIZE or PMIX_RANK), else the single-process backend; CUDA tensors over a
//           bootstrap group of one rank: the single-process backend on the GPU; of several: NCCL,
//           or the staged backend (parallel/staging.h) when NCCL cannot serve the job — a plugin
//           built without NCCL, or two ranks of the group on one GPU (NCCL refuses that), decided
//           alike on every rank; CMOE_GPU_COMM=nccl|staged forces one.
//   kHost   the host world (MPI or single-process); kNccl, kStaged: that backend or its error.
enum class CommBackend { kAuto, kHost, kNccl, kStaged };
struct CommOptions {
  Device device = kCPU;               // the tensors it moves (CUDA: this rank's GPU)
  Communicator* bootstrap = nullptr;  // CUDA: the host group it is built over (required)
  std::string name = "world";
  CommBackend backend = CommBackend::kAuto;
};
// Collective over the bootstrap group (and, for a CUDA device under MPI, over the whole job).
// The host world initialises MPI on first use and finalises it at exit. A rank without a usable
// GPU makes a CUDA call fail on every rank, naming its reason.
absl::StatusOr<std::unique_ptr<Communicator>> make_communicator(const CommOptions& options = {});
bool launched_by_mpi();

// This rank's GPU: its local rank on the node modulo the GPUs it sees. The local rank comes from
// the launcher's environment (OMPI_COMM_WORLD_LOCAL_RANK, SLURM_LOCALID, MPI_LOCALRANKID), else
// from splitting MPI_COMM_WORLD by node (collective), else 0.
absl::StatusOr<int> local_cuda_device();

// make_communicator({}): the whole job's host communicator.
absl::StatusOr<std::unique_ptr<Communicator>> make_world_communicator();
// make_communicator with backend kNccl over `bootstrap` on this rank's GPU (local_cuda_device):
// Unimplemented for a CUDA backend built without NCCL.
absl::StatusOr<std::unique_ptr<Communicator>> make_gpu_communicator(
    Communicator& bootstrap, const std::string& name = "world");

// For a rank that hit an unrecoverable error: prints the status with host and world rank on
// stderr and ends the whole job (MPI_Abort on MPI_COMM_WORLD when MPI is running, exit(1)
// otherwise), so peers blocked in collectives do not wait for their timeout.
[[noreturn]] void abort_job(const absl::Status& status, int exit_code = 1);

// For communication inside a forward or backward pass, where no Status can be returned: an
// error ends the job through abort_job, prefixed with `what`.
void comm_or_abort(const absl::Status& status, const char* what);

}  // namespace cmoe::parallel
