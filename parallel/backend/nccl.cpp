// nccl.cpp — NcclCommunicator (see nccl.h): bootstrap, enqueueing with stream ordering, polled
// completion, split, teardown; the factory's NCCL branch (make_nccl_communicator). Every NCCL and
// CUDA call goes through the CUDA plugin's table (core/cuda/cuda_api.h): this file links
// neither library. NcclResult values are ncclResult_t's (CMOE_NCCL_SUCCESS, ..._IN_PROGRESS).
#include "parallel/backend/nccl.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <utility>

#include "core/cuda/cuda_backend.h"
#include "core/cuda/plugin_loader.h"
#include "parallel/backend/deadline.h"
#include "parallel/backend/mpi.h"

namespace cmoe::parallel {

namespace {

using NcclResult = int32_t;  // an ncclResult_t value, as the plugin's nccl_* entries return

// The CUDA backend's table; NcclCommunicator exists only once cuda::init has loaded it.
const CmoeCudaApi& api() { return cuda::loaded_api(); }

// The NCCL type a reduction runs in; comm_check::reducible has admitted the dtype.
int32_t nccl_reduce_type(DType d) {
  switch (d) {
    case DType::kF32: return CMOE_CUDA_F32;
    case DType::kBF16: return CMOE_CUDA_BF16;
    case DType::kI32: return CMOE_CUDA_I32;
    case DType::kI64: return CMOE_CUDA_I64;
    case DType::kU16: break;
  }
  CMOE_CHECK(false, "NCCL cannot reduce ", dtype_name(d));
  return CMOE_CUDA_F32;
}

int32_t nccl_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum: return CMOE_NCCL_SUM;
    case ReduceOp::kMax: return CMOE_NCCL_MAX;
    case ReduceOp::kMin: return CMOE_NCCL_MIN;
  }
  CMOE_CHECK(false, "unknown ReduceOp ", static_cast<int>(op));
  return CMOE_NCCL_SUM;
}

std::string nccl_error_text(NcclResult r, CmoeNcclComm comm) {
  // The last error's text names the step that failed (it may be an earlier failure's).
  const char* last = api().nccl_last_error(comm);
  return absl::StrCat(api().nccl_error_string(r), " (ncclResult_t ", r, ")",
                      last != nullptr && *last != '\0' ? absl::StrCat(": ", last) : "");
}

// A CUDA entry's code as a Status (the plugin's sentence names the CUDA call).
absl::Status cuda_ok(int32_t code) { return cuda::plugin_status(api(), code); }

// Polls `comm` until a non-blocking call on it has settled: returns its state, or
// ncclInProgress when the deadline passed first.
NcclResult poll_settled(CmoeNcclComm comm, CommClock::time_point start, double timeout_s) {
  DeadlineWaiter waiter(start, timeout_s);
  for (;;) {
    NcclResult state = CMOE_NCCL_SUCCESS;
    const NcclResult r = api().nccl_comm_get_async_error(&state, comm);
    if (r != CMOE_NCCL_SUCCESS) return r;
    if (state != CMOE_NCCL_IN_PROGRESS) return state;
    if (!waiter.pause()) return CMOE_NCCL_IN_PROGRESS;
  }
}

// Makes `device` current for a scope (NCCL and the legacy default stream act on the current
// device) and restores the caller's device after it.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    status_ = cuda_ok(api().get_device(&prev_));
    if (status_.ok() && prev_ != device) {
      status_ = cuda_ok(api().set_device(device));
      switched_ = status_.ok();
    }
  }
  ~DeviceGuard() {
    if (switched_) (void)api().set_device(prev_);
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;
  const absl::Status& status() const { return status_; }

 private:
  absl::Status status_;
  int prev_ = 0;
  bool switched_ = false;
};

}  // namespace

// ---- State: the NCCL communicator and its streams, shared with in-flight Work ----

struct NcclCommunicator::State {
  CmoeNcclComm comm = nullptr;
  cuda::StreamHandle stream = nullptr;  // operations run here (created non-blocking)
  CmoeCudaEvent ready = nullptr;        // recorded on the compute stream before each operation
  int device = 0;
  int world_rank = -1;
  double timeout_s = kDefaultCommTimeoutS;
  std::string group;    // describe_group(...), for messages
  bool broken = false;  // aborted after an error: operations are refused

  // A state with its stream and event on `device`; comm is set by the caller.
  static absl::StatusOr<std::shared_ptr<State>> make(int device, int world_rank, double timeout_s,
                                                     std::string group) {
    auto s = std::make_shared<State>();
    s->device = device;
    s->world_rank = world_rank;
    s->timeout_s = timeout_s;
    s->group = std::move(group);
    DeviceGuard guard(device);
    CMOE_RETURN_IF_ERROR(guard.status());
    CMOE_RETURN_IF_ERROR(cuda_ok(api().stream_create(&s->stream, /*non_blocking=*/1)));
    CMOE_RETURN_IF_ERROR(cuda_ok(api().event_create(&s->ready)));
    return s;
  }

  State() = default;
  State(const State&) = delete;
  State& operator=(const State&) = delete;

  ~State() {
    if (comm != nullptr) {
      // Finalising flushes this rank's operations, which a stalled peer can hold up: it is
      // polled like any operation, and a communicator that does not settle is aborted.
      const CommClock::time_point start = CommClock::now();
      NcclResult r = api().nccl_comm_finalize(comm);
      if (r == CMOE_NCCL_IN_PROGRESS) r = poll_settled(comm, start, timeout_s);
      if (r == CMOE_NCCL_SUCCESS) {
        (void)api().nccl_comm_destroy(comm);
      } else {
        const std::string why = r == CMOE_NCCL_IN_PROGRESS
                                    ? absl::StrCat("no progress in ", timeout_s, " s")
                                    : nccl_error_text(r, comm);
        std::fprintf(stderr,
                     "cmoe: NCCL %s (host %s, world rank %d) did not finalise: %s; aborting it\n",
                     group.c_str(), host_name().c_str(), world_rank, why.c_str());
        (void)api().nccl_comm_abort(comm);
      }
      comm = nullptr;
    }
    if (ready != nullptr) (void)api().event_destroy(ready);
    if (stream != nullptr) (void)api().stream_destroy(stream);
  }

  // Stops the NCCL communicator after an error or on a timeout; idempotent.
  void abort() {
    broken = true;
    if (comm != nullptr) (void)api().nccl_comm_abort(comm);
    comm = nullptr;
  }

  // Internal error naming `what`, the group, host and rank; aborts the communicator (NCCL's
  // rule: after an error nothing can be assumed about operations already enqueued).
  absl::Status fail(NcclResult r, const std::string& what) {
    std::string text = nccl_error_text(r, comm);
    abort();
    return absl::InternalError(absl::StrCat(what, " on NCCL ", group, " failed (host ", host_name(),
                                            ", world rank ", world_rank, "): ", text));
  }

  absl::Status refused(const std::string& what) const {
    return absl::FailedPreconditionError(absl::StrCat(
        what, " on NCCL ", group, ": the communicator was aborted after an earlier error"));
  }

  // After a non-blocking call returned ncclInProgress: the settled state, or on the deadline
  // the job ends here, naming `what`.
  NcclResult settle(CmoeNcclComm c, CommClock::time_point start, const std::string& what) {
    const NcclResult r = poll_settled(c, start, timeout_s);
    if (r == CMOE_NCCL_IN_PROGRESS) {
      const double waited = std::chrono::duration<double>(CommClock::now() - start).count();
      abort_job_on_timeout(what, absl::StrCat("NCCL ", group), waited, timeout_s, [&] {
        if (c != comm) (void)api().nccl_comm_abort(c);
        abort();
      });
    }
    return r;
  }
};

// ---- Work: one enqueued operation, completed by polling its event ----

class NcclCommunicator::Work final : public CommWorkImpl {
 public:
  std::shared_ptr<State> state;  // keeps the NCCL communicator alive while in flight
  std::string what;              // "all_reduce f32(1024) cuda:0 sum", for messages
  double timeout_s = 0;
  CommClock::time_point start = CommClock::now();
  CmoeCudaEvent done = nullptr;  // recorded on the communicator's stream after the operation
  std::vector<Tensor> keep;      // buffers stay alive until completion
  bool complete = false;

  ~Work() override {
    if (done != nullptr) (void)api().event_destroy(done);
  }

  bool test() override {
    if (complete || state->broken) return true;
    if (api().event_query(done) != CMOE_CUDA_NOT_READY) return true;  // finished or failed
    // An asynchronous NCCL error (a peer gone, a network failure) also ends the operation;
    // wait() reports it.
    NcclResult async = CMOE_NCCL_SUCCESS;
    if (api().nccl_comm_get_async_error(&async, state->comm) != CMOE_NCCL_SUCCESS) return true;
    return async != CMOE_NCCL_SUCCESS && async != CMOE_NCCL_IN_PROGRESS;
  }

  absl::Status wait() override {
    if (complete) return absl::OkStatus();
    DeadlineWaiter waiter(start, timeout_s);
    for (;;) {
      if (state->broken) return finish(state->refused(what));
      const int32_t e = api().event_query(done);
      if (e == CMOE_CUDA_OK) return finish(absl::OkStatus());
      if (e != CMOE_CUDA_NOT_READY) {
        absl::Status st = cuda_ok(e);
        state->abort();
        return finish(absl::InternalError(
            absl::StrCat(what, " on NCCL ", state->group, " failed (host ", host_name(),
                         ", world rank ", state->world_rank, "): ", st.message())));
      }
      NcclResult async = CMOE_NCCL_SUCCESS;
      NcclResult r = api().nccl_comm_get_async_error(&async, state->comm);
      if (r == CMOE_NCCL_SUCCESS) r = async;
      if (r != CMOE_NCCL_SUCCESS && r != CMOE_NCCL_IN_PROGRESS) return finish(state->fail(r, what));
      if (!waiter.pause()) {
        abort_job_on_timeout(what, absl::StrCat("NCCL ", state->group), waiter.elapsed_s(),
                             timeout_s, [this] { state->abort(); });
      }
    }
  }

 private:
  absl::Status finish(absl::Status s) {
    complete = true;
    keep.clear();
    return s;
  }
};

// ---- NcclCommunicator ----

NcclCommunicator::NcclCommunicator(std::shared_ptr<State> state, std::string name, int rank,
                                   int size, std::vector<int> world_ranks, int cuda_device)
    : state_(std::move(state)),
      name_(std::move(name)),
      rank_(rank),
      size_(size),
      world_ranks_(std::move(world_ranks)),
      cuda_device_(cuda_device),
      barrier_buf_(Tensor::zeros({1}, DType::kI32, cmoe::cuda_device(cuda_device))) {}

NcclCommunicator::~NcclCommunicator() = default;  // the State finalises the NCCL communicator

double NcclCommunicator::timeout_s() const { return state_->timeout_s; }
void NcclCommunicator::set_timeout_s(double seconds) { state_->timeout_s = seconds; }
cuda::StreamHandle NcclCommunicator::comm_stream() const { return state_->stream; }

absl::StatusOr<std::unique_ptr<NcclCommunicator>> NcclCommunicator::create(Communicator& bootstrap,
                                                                           int cuda_device,
                                                                           std::string name) {
  return create_on(bootstrap, cuda_device, std::move(name));
}

absl::StatusOr<std::unique_ptr<NcclCommunicator>> NcclCommunicator::create_on(
    Communicator& bootstrap, const absl::StatusOr<int>& device, std::string name) {
  const int rank = bootstrap.rank(), size = bootstrap.size();
  const std::string what =
      absl::StrCat("creating NCCL communicator '", name, "' over '", bootstrap.name(), "'");
  // 1. Local set-up: this rank's device, stream and event; on rank 0 the id every rank will
  //    join with.
  absl::Status local = device.ok() ? cuda::init(*device) : device.status();
  if (local.ok() && api().has_nccl == 0) {
    local = absl::UnimplementedError(
        absl::StrCat("the CUDA backend ", cuda::plugin_path(),
                     " was built without NCCL (configure with NCCL found, or set NCCL_ROOT)"));
  }
  const int cuda_device = device.ok() ? *device : -1;
  std::shared_ptr<State> state;
  if (local.ok()) {
    absl::StatusOr<std::shared_ptr<State>> made =
        State::make(cuda_device, bootstrap.world_rank(), bootstrap.timeout_s(), "");
    if (made.ok()) state = std::move(*made);
    local = made.status();
  }
  uint8_t id[CMOE_NCCL_UNIQUE_ID_BYTES] = {};
  if (local.ok() && rank == 0) {
    const NcclResult r = api().nccl_get_unique_id(id);
    if (r != CMOE_NCCL_SUCCESS) {
      local = absl::InternalError(absl::StrCat("ncclGetUniqueId: ", nccl_error_text(r, nullptr)));
    }
  }
  // 2. Agree that every rank succeeded, so a rank without a GPU fails the call everywhere
  //    instead of leaving its peers waiting in ncclCommInitRankConfig until the deadline.
  Tensor failed = Tensor::zeros({1}, DType::kI32);
  failed.data<int32_t>()[0] = local.ok() ? 0 : 1;
  CMOE_RETURN_IF_ERROR(bootstrap.all_reduce(failed, ReduceOp::kSum));
  if (const int32_t n = failed.data<int32_t>()[0]; n > 0) {
    return absl::Status(local.ok() ? absl::StatusCode::kFailedPrecondition : local.code(),
                        absl::StrCat(what, ": ", n, " of ", size,
                                     " ranks could not set up their GPU; this rank (world rank ",
                                     bootstrap.world_rank(), ", CUDA device ",
                                     device.ok() ? absl::StrCat(*device) : "none",
                                     "): ", local.ok() ? "ok" : local.message()));
  }
  // 3. The id's bytes from rank 0, and every member's world rank, over the bootstrap.
  static_assert(CMOE_NCCL_UNIQUE_ID_BYTES % 4 == 0);
  Tensor id_buf = Tensor::zeros({CMOE_NCCL_UNIQUE_ID_BYTES / 4}, DType::kI32);  // (32) i32 = 128 B
  if (rank == 0) std::memcpy(id_buf.raw_data(), id, sizeof(id));
  CMOE_RETURN_IF_ERROR(bootstrap.broadcast(id_buf, 0));
  std::memcpy(id, id_buf.raw_data(), sizeof(id));
  Tensor mine = Tensor::zeros({1}, DType::kI32);
  mine.data<int32_t>()[0] = bootstrap.world_rank();
  Tensor all = Tensor::empty({size}, DType::kI32);
  CMOE_RETURN_IF_ERROR(bootstrap.all_gather(all, mine));
  std::vector<int> world_ranks(all.data<int32_t>(), all.data<int32_t>() + size);
  state->group = describe_group(name, rank, size, world_ranks);
  // 4. Initialise without blocking, polled against the bootstrap's deadline.
  const CommClock::time_point start = CommClock::now();
  CmoeNcclComm comm = nullptr;
  NcclResult r = api().nccl_comm_init_rank(&comm, id, size, rank, /*blocking=*/0);
  state->comm = comm;
  if (r == CMOE_NCCL_IN_PROGRESS && comm != nullptr) {
    r = state->settle(comm, start,
                      absl::StrCat("ncclCommInitRankConfig (NCCL rank ", rank, " of ", size,
                                   ", CUDA device ", cuda_device, ")"));
  }
  if (r != CMOE_NCCL_SUCCESS) return state->fail(r, absl::StrCat(what, ": ncclCommInitRankConfig"));
  return std::unique_ptr<NcclCommunicator>(new NcclCommunicator(
      std::move(state), std::move(name), rank, size, std::move(world_ranks), cuda_device));
}

template <typename Calls>
absl::StatusOr<CommWork> NcclCommunicator::enqueue(std::string what, std::vector<Tensor> keep,
                                                   Calls&& calls) {
  State& s = *state_;
  if (s.broken) return s.refused(what);
  auto w = std::make_unique<Work>();
  w->state = state_;
  w->what = std::move(what);
  w->timeout_s = s.timeout_s;
  w->keep = std::move(keep);
  DeviceGuard guard(cuda_device_);
  CMOE_RETURN_IF_ERROR(guard.status());
  CMOE_RETURN_IF_ERROR(cuda_ok(api().event_create(&w->done)));
  // The operation reads its inputs only after the work queued before it on the compute stream.
  CMOE_RETURN_IF_ERROR(cuda_ok(api().event_record(s.ready, compute_stream_)));
  CMOE_RETURN_IF_ERROR(cuda_ok(api().stream_wait_event(s.stream, s.ready)));
  NcclResult r = api().nccl_group_start();
  if (r == CMOE_NCCL_SUCCESS) {
    r = calls();
    const NcclResult end = api().nccl_group_end();  // closes the group even after a failed call
    if (r == CMOE_NCCL_SUCCESS) r = end;
  }
  // A non-blocking group may still be enqueueing its kernels: the completion event may only
  // be recorded behind them once the communicator has settled.
  if (r == CMOE_NCCL_IN_PROGRESS)
    r = s.settle(s.comm, w->start, absl::StrCat("enqueueing ", w->what));
  if (r != CMOE_NCCL_SUCCESS) return s.fail(r, w->what);
  if (absl::Status st = cuda_ok(api().event_record(w->done, s.stream)); !st.ok()) {
    s.abort();  // the operation is in flight but cannot be tracked
    return st;
  }
  return CommWork(std::move(w));
}

absl::StatusOr<std::unique_ptr<Communicator>> NcclCommunicator::split(int color, int key,
                                                                      const std::string& name) {
  const std::string what =
      absl::StrCat("split of '", name_, "' into '", name, "' (color ", color, ", key ", key, ")");
  if (color < 0) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": color must be >= 0"));
  }
  State& s = *state_;
  if (s.broken) return s.refused(what);
  // Every member's (color, key, world rank), gathered over this communicator. The new group's
  // members follow from it — ordered by key, then by rank, as MPI_Comm_split and ncclCommSplit
  // order them (checked against NCCL below) — and the gather is a timed barrier, so a missing
  // rank is reported before ncclCommSplit starts.
  Tensor mine = Tensor::empty({3}, DType::kI64);  // (3) i64: color, key, world rank
  mine.data<int64_t>()[0] = color;
  mine.data<int64_t>()[1] = key;
  mine.data<int64_t>()[2] = world_rank();
  Tensor all = Tensor::empty({size_, 3}, DType::kI64, device());  // (size, 3) i64
  CMOE_RETURN_IF_ERROR(all_gather(all, mine.to(device())));
  const Tensor host = all.to(kCPU);
  const int64_t* h = host.data<int64_t>();
  std::vector<std::pair<int64_t, int>> members;  // (key, rank in this communicator)
  for (int r = 0; r < size_; ++r) {
    if (h[3 * r] == color) members.emplace_back(h[3 * r + 1], r);
  }
  std::sort(members.begin(), members.end());
  int new_rank = 0;
  std::vector<int> world_ranks;
  for (size_t i = 0; i < members.size(); ++i) {
    if (members[i].second == rank_) new_rank = static_cast<int>(i);
    world_ranks.push_back(static_cast<int>(h[3 * members[i].second + 2]));
  }
  const int new_size = static_cast<int>(members.size());

  CMOE_ASSIGN_OR_RETURN(std::shared_ptr<State> child,
                        State::make(cuda_device_, s.world_rank, s.timeout_s,
                                    describe_group(name, new_rank, new_size, world_ranks)));
  DeviceGuard guard(cuda_device_);
  CMOE_RETURN_IF_ERROR(guard.status());
  const CommClock::time_point start = CommClock::now();
  // The split runs in the background: the parent's state says when it has finished, and NCCL
  // writes the new communicator into `comm` only then.
  CmoeNcclComm comm = nullptr;
  NcclResult r = api().nccl_comm_split(&comm, s.comm, color, key, /*blocking=*/0);
  if (r == CMOE_NCCL_IN_PROGRESS)
    r = s.settle(s.comm, start, absl::StrCat("ncclCommSplit for ", what));
  if (r != CMOE_NCCL_SUCCESS) return s.fail(r, absl::StrCat("ncclCommSplit for ", what));
  if (comm == nullptr)
    return absl::InternalError(absl::StrCat(what, ": ncclCommSplit gave no communicator"));
  child->comm = comm;
  r = child->settle(comm, start, absl::StrCat("ncclCommSplit for ", what));
  if (r != CMOE_NCCL_SUCCESS) return child->fail(r, absl::StrCat("ncclCommSplit for ", what));
  int nccl_rank = -1, nccl_size = -1;
  r = api().nccl_comm_user_rank(&nccl_rank, comm);
  if (r == CMOE_NCCL_SUCCESS) r = api().nccl_comm_count(&nccl_size, comm);
  if (r != CMOE_NCCL_SUCCESS) return child->fail(r, absl::StrCat(what, ": ncclCommUserRank/Count"));
  if (nccl_rank != new_rank || nccl_size != new_size) {
    child->abort();
    return absl::InternalError(absl::StrCat(what, ": NCCL placed this rank at ", nccl_rank, " of ",
                                            nccl_size, ", but ordering by (key, rank) gives ",
                                            new_rank, " of ", new_size));
  }
  auto c = std::unique_ptr<NcclCommunicator>(new NcclCommunicator(
      std::move(child), name, new_rank, new_size, std::move(world_ranks), cuda_device_));
  c->set_compute_stream(compute_stream_);
  return std::unique_ptr<Communicator>(std::move(c));
}

absl::StatusOr<CommWork> NcclCommunicator::all_reduce_async(const Tensor& buf, ReduceOp op) {
  CMOE_RETURN_IF_ERROR(comm_check::reducible(*this, "all_reduce", buf, /*bf16_ok=*/true));
  if (buf.numel() == 0) return CommWork();  // every rank holds nothing: nothing to move
  const State& s = *state_;
  void* p = buf.raw_data();
  return enqueue(absl::StrCat("all_reduce ", buf.str(), " ", reduce_op_name(op)), {buf}, [&] {
    return api().nccl_all_reduce(p, p, static_cast<size_t>(buf.numel()),
                                 nccl_reduce_type(buf.dtype()), nccl_op(op), s.comm, s.stream);
  });
}

absl::StatusOr<CommWork> NcclCommunicator::reduce_scatter_async(const Tensor& out, const Tensor& in,
                                                                ReduceOp op) {
  CMOE_RETURN_IF_ERROR(comm_check::reduce_scatter_shapes(*this, out, in, /*bf16_ok=*/true));
  if (out.numel() == 0) return CommWork();
  const State& s = *state_;
  return enqueue(
      absl::StrCat("reduce_scatter ", in.str(), " -> ", out.str(), " ", reduce_op_name(op)),
      {out, in}, [&] {
        return api().nccl_reduce_scatter(
            out.raw_data(), in.raw_data(), static_cast<size_t>(out.numel()),
            nccl_reduce_type(in.dtype()), nccl_op(op), s.comm, s.stream);
      });
}

absl::StatusOr<CommWork> NcclCommunicator::all_gather_async(const Tensor& out, const Tensor& in) {
  CMOE_RETURN_IF_ERROR(comm_check::all_gather_shapes(*this, out, in));
  if (in.nbytes() == 0) return CommWork();
  const State& s = *state_;
  // Moves bytes: NCCL does not look at the values of a gather.
  return enqueue(absl::StrCat("all_gather ", in.str(), " -> ", out.str()), {out, in}, [&] {
    return api().nccl_all_gather(out.raw_data(), in.raw_data(), in.nbytes(), s.comm, s.stream);
  });
}

absl::StatusOr<CommWork> NcclCommunicator::exchange_rows(std::string what, const Tensor& out,
                                                         std::span<const int64_t> recv_rows,
                                                         const Tensor& in,
                                                         std::span<const int64_t> send_rows,
                                                         size_t row_bytes) {
  const State& s = *state_;
  const char* src = static_cast<const char*>(in.raw_data());
  char* dst = static_cast<char*>(out.raw_data());
  return enqueue(std::move(what), {out, in}, [&]() -> NcclResult {
    size_t s_at = 0, r_at = 0;  // byte offsets into in and out
    for (int j = 0; j < size_; ++j) {
      const size_t ns = static_cast<size_t>(send_rows[static_cast<size_t>(j)]) * row_bytes;
      const size_t nr = static_cast<size_t>(recv_rows[static_cast<size_t>(j)]) * row_bytes;
      // Zero counts are skipped on both sides (the sender's count to j is j's count from it).
      if (ns > 0) {
        const NcclResult r = api().nccl_send(src + s_at, ns, j, s.comm, s.stream);
        if (r != CMOE_NCCL_SUCCESS) return r;
      }
      if (nr > 0) {
        const NcclResult r = api().nccl_recv(dst + r_at, nr, j, s.comm, s.stream);
        if (r != CMOE_NCCL_SUCCESS) return r;
      }
      s_at += ns;
      r_at += nr;
    }
    return CMOE_NCCL_SUCCESS;
  });
}

absl::StatusOr<CommWork> NcclCommunicator::all_to_all_async(const Tensor& out, const Tensor& in) {
  CMOE_RETURN_IF_ERROR(comm_check::all_to_all_shapes(*this, out, in));
  if (in.nbytes() == 0) return CommWork();
  // One block per rank, as one "row" each (ncclAlltoAll exists only from NCCL 2.28).
  const std::vector<int64_t> ones(static_cast<size_t>(size_), 1);
  return exchange_rows(absl::StrCat("all_to_all ", in.str(), " -> ", out.str()), out, ones, in,
                       ones, in.nbytes() / static_cast<size_t>(size_));
}

absl::StatusOr<CommWork> NcclCommunicator::all_to_all_v_async(const Tensor& out,
                                                              std::span<const int64_t> recv_rows,
                                                              const Tensor& in,
                                                              std::span<const int64_t> send_rows) {
  int64_t row = 0;
  CMOE_RETURN_IF_ERROR(comm_check::all_to_all_v_shapes(*this, out, recv_rows, in, send_rows, &row));
  if (row == 0) return CommWork();  // rows of zero elements: nothing moves on any rank
  return exchange_rows(absl::StrCat("all_to_all_v ", in.str(), " -> ", out.str()), out, recv_rows,
                       in, send_rows, static_cast<size_t>(row) * dtype_size(in.dtype()));
}

absl::StatusOr<CommWork> NcclCommunicator::broadcast_async(const Tensor& buf, int root) {
  CMOE_RETURN_IF_ERROR(comm_check::device_is(*this, "broadcast", buf));
  CMOE_RETURN_IF_ERROR(comm_check::peer(*this, "broadcast", root));
  if (buf.nbytes() == 0) return CommWork();
  const State& s = *state_;
  void* p = buf.raw_data();
  return enqueue(absl::StrCat("broadcast ", buf.str(), " from rank ", root), {buf},
                 [&] { return api().nccl_broadcast(p, p, buf.nbytes(), root, s.comm, s.stream); });
}

absl::StatusOr<CommWork> NcclCommunicator::batch_p2p_async(std::span<const P2POp> ops) {
  std::string what = "batch_p2p [";
  std::vector<Tensor> keep;
  for (size_t i = 0; i < ops.size(); ++i) {
    const P2POp& op = ops[i];
    const char* kind = op.kind == P2POp::kSend ? "send" : "recv";
    CMOE_RETURN_IF_ERROR(comm_check::device_is(*this, kind, op.tensor));
    CMOE_RETURN_IF_ERROR(comm_check::peer(*this, kind, op.peer));
    if (op.tag < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(kind, " on communicator '", name_, "': tag ", op.tag, " must be >= 0"));
    }
    absl::StrAppend(&what, i ? ", " : "", kind, " ", op.tensor.str(),
                    op.kind == P2POp::kSend ? " to rank " : " from rank ", op.peer, " (world rank ",
                    world_ranks_[static_cast<size_t>(op.peer)], ") tag ", op.tag);
    keep.push_back(op.tensor);
  }
  const State& s = *state_;
  return enqueue(what + "]", std::move(keep), [&]() -> NcclResult {
    for (const P2POp& op : ops) {
      const size_t n = op.tensor.nbytes();
      if (n == 0) continue;  // skipped on both sides, so the posting order still pairs
      const NcclResult r =
          op.kind == P2POp::kSend
              ? api().nccl_send(op.tensor.raw_data(), n, op.peer, s.comm, s.stream)
              : api().nccl_recv(op.tensor.raw_data(), n, op.peer, s.comm, s.stream);
      if (r != CMOE_NCCL_SUCCESS) return r;
    }
    return CMOE_NCCL_SUCCESS;
  });
}

absl::StatusOr<CommWork> NcclCommunicator::barrier_async() {
  const State& s = *state_;
  void* p = barrier_buf_.raw_data();
  return enqueue("barrier", {barrier_buf_}, [&] {
    return api().nccl_all_reduce(p, p, 1, CMOE_CUDA_I32, CMOE_NCCL_SUM, s.comm, s.stream);
  });
}

// ---- the factory's NCCL branch ----

absl::StatusOr<std::unique_ptr<Communicator>> make_nccl_communicator(Communicator& bootstrap,
                                                                     const absl::StatusOr<int>& device,
                                                                     const std::string& name) {
  // A rank without a usable GPU still joins the bootstrap's agreement step, which then fails
  // the call on every rank (with this rank's reason here) instead of leaving the others waiting.
  CMOE_ASSIGN_OR_RETURN(std::unique_ptr<NcclCommunicator> c, NcclCommunicator::create_on(bootstrap, device, name));
  return std::unique_ptr<Communicator>(std::move(c));
}

}  // namespace cmoe::parallel
