// mpi.cpp — MpiCommunicator (see mpi.h), MPI set-up, abort_job and the host world communicator.
#include "parallel/backend/mpi.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "parallel/backend/local.h"

namespace cmoe::parallel {

namespace {

bool mpi_running() {
  int init = 0, fin = 0;
  MPI_Initialized(&init);
  MPI_Finalized(&fin);
  return init && !fin;
}

int world_rank_or_minus_one() {
  int r = -1;
  if (mpi_running()) MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}

std::string mpi_error_text(int rc) {
  char buf[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(rc, buf, &len) != MPI_SUCCESS) return absl::StrCat("MPI error ", rc);
  return std::string(buf, static_cast<size_t>(len));
}

MPI_Datatype mpi_type(DType d) {
  switch (d) {
    case DType::kF32: return MPI_FLOAT;
    case DType::kBF16: return MPI_UINT16_T;  // moved as bits, never reduced
    case DType::kU16: return MPI_UINT16_T;
    case DType::kI32: return MPI_INT32_T;
    case DType::kI64: return MPI_INT64_T;
  }
  return MPI_DATATYPE_NULL;
}

MPI_Op mpi_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum: return MPI_SUM;
    case ReduceOp::kMax: return MPI_MAX;
    case ReduceOp::kMin: return MPI_MIN;
  }
  return MPI_OP_NULL;
}

void finalize_at_exit() {
  if (mpi_running()) MPI_Finalize();
}

}  // namespace

std::string host_name() {
  char buf[256] = {};
  if (gethostname(buf, sizeof(buf) - 1) != 0) return "unknown-host";
  return buf;
}

absl::Status mpi_init(int* argc, char*** argv) {
  int init = 0;
  MPI_Initialized(&init);
  if (init) return absl::OkStatus();
  int provided = 0;
  int rc = MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
  if (rc != MPI_SUCCESS) {
    return absl::UnavailableError(absl::StrCat("MPI_Init_thread failed on host ", host_name(), ": ",
                                               mpi_error_text(rc)));
  }
  if (provided < MPI_THREAD_FUNNELED) {
    return absl::UnavailableError("MPI does not provide MPI_THREAD_FUNNELED");
  }
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  std::atexit(finalize_at_exit);
  MPI_Comm node = MPI_COMM_NULL;
  int node_ranks = 1;
  if (MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node) == MPI_SUCCESS) {
    MPI_Comm_size(node, &node_ranks);
    MPI_Comm_free(&node);
  }
  // Waiters spin as plain MPI does (busy polling) when every rank has a core of its own, but
  // not at all on an oversubscribed node, where the peer a rank waits for may need the core.
  if (node_ranks > static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN))) {
    set_comm_spin_time(CommClock::duration::zero());
  }
  return absl::OkStatus();
}

absl::StatusOr<int> mpi_local_rank() {
  if (!mpi_running()) return absl::FailedPreconditionError("mpi_local_rank: MPI is not initialised");
  MPI_Comm node = MPI_COMM_NULL;
  int rc = MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node);
  if (rc != MPI_SUCCESS) {
    return absl::InternalError(absl::StrCat("MPI_Comm_split_type: ", mpi_error_text(rc)));
  }
  int r = 0;
  MPI_Comm_rank(node, &r);
  MPI_Comm_free(&node);
  return r;
}

void abort_job(const absl::Status& status, int exit_code) {
  std::fprintf(stderr, "cmoe: fatal error on host %s, world rank %d: %s — aborting the job\n",
               host_name().c_str(), world_rank_or_minus_one(), status.ToString().c_str());
  std::fflush(stderr);
  std::fflush(stdout);
  if (mpi_running()) MPI_Abort(MPI_COMM_WORLD, exit_code);
  std::exit(exit_code);
}

void abort_job_on_timeout(const std::string& what, const std::string& group, double waited_s,
                          double timeout_s, const std::function<void()>& before_abort) {
  std::fprintf(stderr,
               "cmoe: communication timeout on host %s, world rank %d: %s on %s did not "
               "complete after %.1f s (timeout %g s, set by CMOE_COMM_TIMEOUT_S). A peer in "
               "this group is stalled or has died; aborting the job.\n",
               host_name().c_str(), world_rank_or_minus_one(), what.c_str(), group.c_str(),
               waited_s, timeout_s);
  std::fflush(stderr);
  if (before_abort) before_abort();
  if (mpi_running()) MPI_Abort(MPI_COMM_WORLD, kCommTimeoutExitCode);
  std::_Exit(kCommTimeoutExitCode);
}

void comm_or_abort(const absl::Status& status, const char* what) {
  if (!status.ok()) abort_job(absl::Status(status.code(), absl::StrCat(what, ": ", status.message())));
}

bool launched_by_mpi() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"}) {
    if (std::getenv(v) != nullptr) return true;
  }
  return false;
}

absl::StatusOr<std::unique_ptr<Communicator>> make_host_world_communicator() {
  if (!launched_by_mpi()) return std::unique_ptr<Communicator>(std::make_unique<LocalCommunicator>());
  CMOE_RETURN_IF_ERROR(mpi_init(nullptr, nullptr));
  CMOE_ASSIGN_OR_RETURN(auto w, MpiCommunicator::world());
  return std::unique_ptr<Communicator>(std::move(w));
}

// ---- Work: one posted operation, completed by polling with a deadline ----

class MpiCommunicator::Work final : public CommWorkImpl {
 public:
  std::string what;         // "all_reduce f32(1024) sum", for messages
  std::string group;        // "communicator 'dp' (rank 1 of 2, world ranks 1,3)"
  double timeout_s = 0;
  CommClock::time_point start = CommClock::now();
  std::vector<MPI_Request> reqs;
  std::vector<Tensor> keep;           // buffers stay alive until completion
  std::vector<int> counts, displs;    // all_to_all_v arrays must outlive the request

  absl::Status post_failed(int rc, const char* call) {
    // Requests already posted must still complete before their buffers can be released.
    if (!reqs.empty()) (void)wait();
    return absl::InternalError(absl::StrCat(call, " failed for ", what, " on ", group,
                                            " (host ", host_name(), ", world rank ",
                                            world_rank_or_minus_one(), "): ", mpi_error_text(rc)));
  }

  bool test() override {
    if (reqs.empty()) return true;
    int flag = 0;
    MPI_Testall(static_cast<int>(reqs.size()), reqs.data(), &flag, MPI_STATUSES_IGNORE);
    return flag != 0;
  }

  absl::Status wait() override {
    if (reqs.empty()) return absl::OkStatus();
    std::vector<MPI_Status> st(reqs.size());
    DeadlineWaiter waiter(start, timeout_s);
    for (;;) {
      int flag = 0;
      int rc = MPI_Testall(static_cast<int>(reqs.size()), reqs.data(), &flag, st.data());
      if (rc != MPI_SUCCESS) return error_from(rc, st);
      if (flag) {
        reqs.clear();
        return absl::OkStatus();
      }
      if (!waiter.pause()) abort_job_on_timeout(what, group, waiter.elapsed_s(), timeout_s);
    }
  }

 private:
  absl::Status error_from(int rc, const std::vector<MPI_Status>& st) {
    if (rc == MPI_ERR_IN_STATUS) {
      for (const MPI_Status& s : st) {
        if (s.MPI_ERROR != MPI_SUCCESS && s.MPI_ERROR != MPI_ERR_PENDING) {
          rc = s.MPI_ERROR;
          break;
        }
      }
    }
    // The failed requests are complete; any others are abandoned with the job.
    reqs.clear();
    return absl::InternalError(absl::StrCat(what, " on ", group, " failed (host ", host_name(),
                                            ", world rank ", world_rank_or_minus_one(), "): ",
                                            mpi_error_text(rc)));
  }
};

// ---- MpiCommunicator ----

absl::StatusOr<std::unique_ptr<MpiCommunicator>> MpiCommunicator::world(const std::string& name) {
  if (!mpi_running()) return absl::FailedPreconditionError("MpiCommunicator::world: call mpi_init first");
  MPI_Comm dup = MPI_COMM_NULL;
  int rc = MPI_Comm_dup(MPI_COMM_WORLD, &dup);
  if (rc != MPI_SUCCESS) return absl::InternalError(absl::StrCat("MPI_Comm_dup: ", mpi_error_text(rc)));
  return std::make_unique<MpiCommunicator>(dup, name, default_comm_timeout_s());
}

MpiCommunicator::MpiCommunicator(MPI_Comm comm, std::string name, double timeout_s)
    : comm_(comm), name_(std::move(name)), timeout_s_(timeout_s) {
  CMOE_CHECK(comm_ != MPI_COMM_NULL && comm_ != MPI_COMM_WORLD && comm_ != MPI_COMM_SELF,
             "MpiCommunicator must own a communicator of its own");
  MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
  MPI_Comm_rank(comm_, &rank_);
  MPI_Comm_size(comm_, &size_);
  MPI_Group group = MPI_GROUP_NULL, world = MPI_GROUP_NULL;
  MPI_Comm_group(comm_, &group);
  MPI_Comm_group(MPI_COMM_WORLD, &world);
  std::vector<int> mine(static_cast<size_t>(size_));
  for (int i = 0; i < size_; ++i) mine[static_cast<size_t>(i)] = i;
  world_ranks_.resize(static_cast<size_t>(size_));
  MPI_Group_translate_ranks(group, size_, mine.data(), world, world_ranks_.data());
  MPI_Group_free(&group);
  MPI_Group_free(&world);
  void* ub = nullptr;
  int found = 0;
  MPI_Comm_get_attr(comm_, MPI_TAG_UB, &ub, &found);
  if (found) tag_ub_ = *static_cast<int*>(ub);
}

MpiCommunicator::~MpiCommunicator() {
  if (comm_ != MPI_COMM_NULL && mpi_running()) MPI_Comm_free(&comm_);
}

std::unique_ptr<MpiCommunicator::Work> MpiCommunicator::start_work(std::string what) const {
  auto w = std::make_unique<Work>();
  w->what = std::move(what);
  w->group = describe_group(name_, rank_, size_, world_ranks_);
  w->timeout_s = timeout_s_;
  return w;
}

absl::Status MpiCommunicator::count_fits(const char* op, int64_t count) const {
  if (count > INT_MAX) {
    return absl::InvalidArgumentError(absl::StrCat(op, " on communicator '", name_, "': ", count,
                                                   " elements per rank exceed MPI's int count"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Communicator>> MpiCommunicator::split(int color, int key,
                                                                     const std::string& name) {
  if (color < 0) {
    return absl::InvalidArgumentError(absl::StrCat("split of '", name_, "' into '", name,
                                                   "': color ", color, " must be >= 0"));
  }
  // MPI_Comm_split blocks without a deadline; a timed barrier first makes sure every rank
  // has arrived, so a missing rank is reported instead of hanging here.
  CMOE_RETURN_IF_ERROR(barrier());
  MPI_Comm out = MPI_COMM_NULL;
  int rc = MPI_Comm_split(comm_, color, key, &out);
  if (rc != MPI_SUCCESS) {
    return absl::InternalError(absl::StrCat("MPI_Comm_split of '", name_, "' into '", name,
                                            "': ", mpi_error_text(rc)));
  }
  return std::unique_ptr<Communicator>(std::make_unique<MpiCommunicator>(out, name, timeout_s_));
}

absl::StatusOr<CommWork> MpiCommunicator::all_reduce_async(const Tensor& buf, ReduceOp op) {
  CMOE_RETURN_IF_ERROR(comm_check::reducible(*this, "all_reduce", buf));
  auto w = start_work(absl::StrCat("all_reduce ", buf.str(), " ", reduce_op_name(op)));
  w->keep.push_back(buf);
  char* p = static_cast<char*>(buf.raw_data());
  const size_t esz = dtype_size(buf.dtype());
  for (int64_t at = 0; at < buf.numel(); at += max_chunk_elems_) {
    int n = static_cast<int>(std::min(max_chunk_elems_, buf.numel() - at));
    MPI_Request r;
    int rc = MPI_Iallreduce(MPI_IN_PLACE, p + static_cast<size_t>(at) * esz, n,
                            mpi_type(buf.dtype()), mpi_op(op), comm_, &r);
    if (rc != MPI_SUCCESS) return w->post_failed(rc, "MPI_Iallreduce");
    w->reqs.push_back(r);
  }
  return CommWork(std::move(w));
}

absl::StatusOr<CommWork> MpiCommunicator::reduce_scatter_async(const Tensor& out, const Tensor& in,
                                                               ReduceOp op) {
  CMOE_RETURN_IF_ERROR(comm_check::reduce_scatter_shapes(*this, out, in));
  CMOE_RETURN_IF_ERROR(count_fits("reduce_scatter", out.numel()));
  auto w = start_work(absl::StrCat("reduce_scatter ", in.str(), " -> ", out.str(), " ",
                                   reduce_op_name(op)));
  w->keep = {out, in};
  MPI_Request r;
  int rc = MPI_Ireduce_scatter_block(in.raw_data(), out.raw_data(), static_cast<int>(out.numel()),
                                     mpi_type(in.dtype()), mpi_op(op), comm_, &r);
  if (rc != MPI_SUCCESS) return w->post_failed(rc, "MPI_Ireduce_scatter_block");
  w->reqs.push_back(r);
  return CommWork(std::move(w));
}

absl::StatusOr<CommWork> MpiCommunicator::all_gather_async(const Tensor& out, const Tensor& in) {
  CMOE_RETURN_IF_ERROR(comm_check::all_gather_shapes(*this, out, in));
  CMOE_RETURN_IF_ERROR(count_fits("all_gather", in.numel()));
  auto w = start_work(absl::StrCat("all_gather ", in.str(), " -> ", out.str()));
  w->keep = {out, in};
  MPI_Datatype t = mpi_type(in.dtype());
  int n = static_cast<int>(in.numel());
  MPI_Request r;
  int rc = MPI_Iallgather(in.raw_data(), n, t, out.raw_data(), n, t, comm_, &r);
  if (rc != MPI_SUCCESS) return w->post_failed(rc, "MPI_Iallgather");
  w->reqs.push_back(r);
  return CommWork(std::move(w));
}

absl::StatusOr<CommWork> MpiCommunicator::all_to_all_async(const Tensor& out, const Tensor& in) {
  CMOE_RETURN_IF_ERROR(comm_check::all_to_all_shapes(*this, out, in));
  int64_t per_rank = in.numel() / size_;
  CMOE_RETURN_IF_ERROR(count_fits("all_to_all", per_rank));
  auto w = start_work(absl::StrCat("all_to_all ", in.str(), " -> ", out.str()));
  w->keep = {out, in};
  MPI_Datatype t = mpi_type(in.dtype());
  int n = static_cast<int>(per_rank);
  MPI_Request r;
  int rc = MPI_Ialltoall(in.raw_data(), n, t, out.raw_data(), n, t, comm_, &r);
  if (rc != MPI_SUCCESS) return w->post_failed(rc, "MPI_Ialltoall");
  w->reqs.push_back(r);
  return CommWork(std::move(w));
}

absl::StatusOr<CommWork> MpiCommunicator::all_to_all_v_async(const Tensor& out,
                                                             std::span<const int64_t> recv_rows,
                                                             const Tensor& in,
                                                             std::span<const int64_t> send_rows) {
  int64_t row = 0;
  CMOE_RETURN_IF_ERROR(comm_check::all_to_all_v_shapes(*this, out, recv_rows, in, send_rows, &row));
  CMOE_RETURN_IF_ERROR(count_fits("all_to_all_v", std::max(in.dim(0), out.dim(0))));
  CMOE_RETURN_IF_ERROR(count_fits("all_to_all_v", row));
  if (row == 0) return CommWork();  // rows of zero elements: nothing moves on any rank
  auto w = start_work(absl::StrCat("all_to_all_v ", in.str(), " -> ", out.str()));
  w->keep = {out, in};
  // Counts and displacements are in rows: one contiguous row datatype keeps them small.
  const auto n = static_cast<size_t>(size_);
  w->counts.resize(4 * n);
  int* sc = w->counts.data();
  int* sd = sc + n;
  int* rcnt = sd + n;
  int* rd = rcnt + n;
  int s_at = 0, r_at = 0;
  for (size_t j = 0; j < n; ++j) {
    sc[j] = static_cast<int>(send_rows[j]);
    sd[j] = s_at;
    s_at += sc[j];
    rcnt[j] = static_cast<int>(recv_rows[j]);
    rd[j] = r_at;
    r_at += rcnt[j];
  }
  MPI_Datatype row_type = MPI_DATATYPE_NULL;
  MPI_Type_contiguous(static_cast<int>(row), mpi_type(in.dtype()), &row_type);
  MPI_Type_commit(&row_type);
  MPI_Request r;
  int rc = MPI_Ialltoallv(in.raw_data(), sc, sd, row_type, out.raw_data(), rcnt, rd, row_type,
                          comm_, &r);
  // Freeing a type in use by a pending operation is allowed; it is released after completion.
  MPI_Type_free(&row_type);
  if (rc != MPI_SUCCESS) return w->post_failed(rc, "MPI_Ialltoallv");
  w->reqs.push_back(r);
  return CommWork(std::move(w));
}

absl::StatusOr<CommWork> MpiCommunicator::broadcast_async(const Tensor& buf, int root) {
  CMOE_RETURN_IF_ERROR(comm_check::device_is(*this, "broadcast", buf));
  CMOE_RETURN_IF_ERROR(comm_check::peer(*this, "broadcast", root));
  auto w = start_work(absl::StrCat("broadcast ", buf.str(), " from rank ", root));
  w->keep.push_back(buf);
  char* p = static_cast<char*>(buf.raw_data());
  const size_t esz = dtype_size(buf.dtype());
  for (int64_t at = 0; at < buf.numel(); at += max_chunk_elems_) {
    int n = static_cast<int>(std::min(max_chunk_elems_, buf.numel() - at));
    MPI_Request r;
    int rc = MPI_Ibcast(p + static_cast<size_t>(at) * esz, n, mpi_type(buf.dtype()), root, comm_, &r);
    if (rc != MPI_SUCCESS) return w->post_failed(rc, "MPI_Ibcast");
    w->reqs.push_back(r);
  }
  return CommWork(std::move(w));
}

absl::StatusOr<CommWork> MpiCommunicator::batch_p2p_async(std::span<const P2POp> ops) {
  std::string what = "batch_p2p [";
  for (size_t i = 0; i < ops.size(); ++i) {
    const P2POp& op = ops[i];
    const char* kind = op.kind == P2POp::kSend ? "send" : "recv";
    CMOE_RETURN_IF_ERROR(comm_check::device_is(*this, kind, op.tensor));
    CMOE_RETURN_IF_ERROR(comm_check::peer(*this, kind, op.peer));
    if (op.tag < 0 || op.tag > tag_ub_) {
      return absl::InvalidArgumentError(absl::StrCat(kind, " on communicator '", name_, "': tag ",
                                                     op.tag, " outside [0, ", tag_ub_, "]"));
    }
    absl::StrAppend(&what, i ? ", " : "", kind, " ", op.tensor.str(),
                    op.kind == P2POp::kSend ? " to rank " : " from rank ", op.peer, " (world rank ",
                    world_ranks_[static_cast<size_t>(op.peer)], ") tag ", op.tag);
  }
  auto w = start_work(what + "]");
  for (const P2POp& op : ops) {
    w->keep.push_back(op.tensor);
    char* p = static_cast<char*>(op.tensor.raw_data());
    const size_t esz = dtype_size(op.tensor.dtype());
    const int64_t numel = op.tensor.numel();
    // A zero-element message still matches its partner, so post at least one call.
    for (int64_t at = 0; at < numel || at == 0; at += max_chunk_elems_) {
      int n = static_cast<int>(std::min(max_chunk_elems_, numel - at));
      MPI_Request r;
      int rc = op.kind == P2POp::kSend
                   ? MPI_Isend(p + static_cast<size_t>(at) * esz, n, mpi_type(op.tensor.dtype()),
                               op.peer, op.tag, comm_, &r)
                   : MPI_Irecv(p + static_cast<size_t>(at) * esz, n, mpi_type(op.tensor.dtype()),
                               op.peer, op.tag, comm_, &r);
      if (rc != MPI_SUCCESS) return w->post_failed(rc, op.kind == P2POp::kSend ? "MPI_Isend" : "MPI_Irecv");
      w->reqs.push_back(r);
      if (numel == 0) break;
    }
  }
  return CommWork(std::move(w));
}

absl::StatusOr<CommWork> MpiCommunicator::barrier_async() {
  auto w = start_work("barrier");
  MPI_Request r;
  int rc = MPI_Ibarrier(comm_, &r);
  if (rc != MPI_SUCCESS) return w->post_failed(rc, "MPI_Ibarrier");
  w->reqs.push_back(r);
  return CommWork(std::move(w));
}

}  // namespace cmoe::parallel
