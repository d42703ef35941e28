// communicator.cpp — backend-independent parts of the Communicator interface: the blocking
// forms (async + wait), CommWork, the timeout default and the shared argument checks.
#include "parallel/communicator.h"

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include "core/profiler.h"

namespace cmoe::parallel {

double default_comm_timeout_s() {
  const char* env = std::getenv("CMOE_COMM_TIMEOUT_S");
  if (env == nullptr || *env == '\0') return kDefaultCommTimeoutS;
  char* end = nullptr;
  errno = 0;
  double v = std::strtod(env, &end);
  if (errno != 0 || end == env || *end != '\0' || !(v > 0)) {
    static bool warned = false;
    if (!warned) {
      std::fprintf(stderr, "cmoe: ignoring CMOE_COMM_TIMEOUT_S='%s' (want seconds > 0); using %g s\n",
                   env, kDefaultCommTimeoutS);
      warned = true;
    }
    return kDefaultCommTimeoutS;
  }
  return v;
}

const char* reduce_op_name(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum: return "sum";
    case ReduceOp::kMax: return "max";
    case ReduceOp::kMin: return "min";
  }
  return "?";
}

const char* comm_kind_name(CommKind kind) {
  switch (kind) {
    case CommKind::kAllReduce: return "all_reduce";
    case CommKind::kReduceScatter: return "reduce_scatter";
    case CommKind::kAllGather: return "all_gather";
    case CommKind::kAllToAll: return "all_to_all";
    case CommKind::kAllToAllV: return "all_to_all_v";
    case CommKind::kBroadcast: return "broadcast";
    case CommKind::kSendRecv: return "send_recv";
    case CommKind::kBarrier: return "barrier";
  }
  return "?";
}

int64_t CommCounters::total_bytes() const {
  int64_t t = 0;
  for (int64_t b : bytes) t += b;
  return t;
}

CommCounters& CommCounters::operator+=(const CommCounters& o) {
  for (int k = 0; k < kNumCommKinds; ++k) calls[k] += o.calls[k], bytes[k] += o.bytes[k];
  return *this;
}

CommCounters& CommCounters::operator-=(const CommCounters& o) {
  for (int k = 0; k < kNumCommKinds; ++k) calls[k] -= o.calls[k], bytes[k] -= o.bytes[k];
  return *this;
}

CommCounters Communicator::counters() const {
  CommCounters c;
  for (int k = 0; k < kNumCommKinds; ++k) {
    c.calls[k] = calls_[k].load(std::memory_order_relaxed);
    c.bytes[k] = bytes_[k].load(std::memory_order_relaxed);
  }
  return c;
}

// ---- CommWork ----

CommWork& CommWork::operator=(CommWork&& o) noexcept {
  if (this != &o) {
    if (impl_) (void)impl_->wait();
    impl_ = std::move(o.impl_);
  }
  return *this;
}

CommWork::~CommWork() {
  if (impl_) (void)impl_->wait();
}

absl::Status CommWork::wait() {
  if (!impl_) return absl::OkStatus();
  absl::Status s = impl_->wait();
  impl_.reset();
  return s;
}

bool CommWork::done() { return !impl_ || impl_->test(); }

absl::Status sleeping_barrier(Communicator& c) {
  CMOE_ASSIGN_OR_RETURN(CommWork w, c.barrier_async());
  while (!w.done()) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  return w.wait();
}

// ---- blocking forms ----

namespace {
absl::Status wait_on(absl::StatusOr<CommWork> w) {
  if (!w.ok()) return w.status();
  return w->wait();
}
}  // namespace

// Each blocking operation is counted (count()) and is a profiler span (core/profiler.h)
// carrying the bytes this rank sends or contributes, and counts toward the step's
// communication time.
absl::Status Communicator::all_reduce(const Tensor& buf, ReduceOp op) {
  count(CommKind::kAllReduce, static_cast<int64_t>(buf.nbytes()));
  prof::Span span("all_reduce", prof::Cat::kComm);
  span.add_work(0, static_cast<double>(buf.nbytes()));
  return wait_on(all_reduce_async(buf, op));
}
absl::Status Communicator::reduce_scatter(const Tensor& out, const Tensor& in, ReduceOp op) {
  count(CommKind::kReduceScatter, static_cast<int64_t>(in.nbytes()));
  prof::Span span("reduce_scatter", prof::Cat::kComm);
  span.add_work(0, static_cast<double>(in.nbytes()));
  return wait_on(reduce_scatter_async(out, in, op));
}
absl::Status Communicator::all_gather(const Tensor& out, const Tensor& in) {
  count(CommKind::kAllGather, static_cast<int64_t>(in.nbytes()));
  prof::Span span("all_gather", prof::Cat::kComm);
  span.add_work(0, static_cast<double>(in.nbytes()));
  return wait_on(all_gather_async(out, in));
}
absl::Status Communicator::all_to_all(const Tensor& out, const Tensor& in) {
  count(CommKind::kAllToAll, static_cast<int64_t>(in.nbytes()));
  prof::Span span("all_to_all", prof::Cat::kComm);
  span.add_work(0, static_cast<double>(in.nbytes()));
  return wait_on(all_to_all_async(out, in));
}
absl::Status Communicator::all_to_all_v(const Tensor& out, std::span<const int64_t> recv_rows,
                                        const Tensor& in, std::span<const int64_t> send_rows) {
  count(CommKind::kAllToAllV, static_cast<int64_t>(in.nbytes()));
  prof::Span span("all_to_all_v", prof::Cat::kComm);
  span.add_work(0, static_cast<double>(in.nbytes()));
  return wait_on(all_to_all_v_async(out, recv_rows, in, send_rows));
}
absl::Status Communicator::broadcast(const Tensor& buf, int root) {
  count(CommKind::kBroadcast, root == rank() ? static_cast<int64_t>(buf.nbytes()) : 0);
  prof::Span span("broadcast", prof::Cat::kComm);
  span.add_work(0, static_cast<double>(buf.nbytes()));
  return wait_on(broadcast_async(buf, root));
}
absl::Status Communicator::send(const Tensor& t, int dst, int tag) {
  P2POp op{P2POp::kSend, t, dst, tag};
  return batch_p2p({&op, 1});
}
absl::Status Communicator::recv(const Tensor& t, int src, int tag) {
  P2POp op{P2POp::kRecv, t, src, tag};
  return batch_p2p({&op, 1});
}
absl::Status Communicator::batch_p2p(std::span<const P2POp> ops) {
  int64_t sent = 0;
  for (const P2POp& o : ops)
    if (o.kind == P2POp::kSend) sent += static_cast<int64_t>(o.tensor.nbytes());
  count(CommKind::kSendRecv, sent);
  prof::Span span("send_recv", prof::Cat::kComm);
  span.add_work(0, static_cast<double>(sent));
  return wait_on(batch_p2p_async(ops));
}
absl::Status Communicator::barrier() {
  count(CommKind::kBarrier, 0);
  prof::Span span("barrier", prof::Cat::kComm);
  return wait_on(barrier_async());
}

// ---- argument checks ----

namespace comm_check {

namespace {
// Elements per dim-0 row, from the shape (so a (0, d) tensor still has rows of d).
int64_t trailing_elems(const Tensor& t) {
  int64_t n = 1;
  for (int i = 1; i < t.rank(); ++i) n *= t.dim(i);
  return n;
}

std::string where(const Communicator& c, const char* op) {
  return absl::StrCat(op, " on communicator '", c.name(), "' (rank ", c.rank(), " of ", c.size(),
                      ")");
}
}  // namespace

absl::Status device_is(const Communicator& c, const char* op, const Tensor& t) {
  if (!t.defined()) return absl::InvalidArgumentError(absl::StrCat(where(c, op), ": undefined tensor"));
  if (t.device() != c.device()) {
    return absl::InvalidArgumentError(absl::StrCat(
        where(c, op), ": tensor ", t.str(), " is on the wrong device for this backend",
        c.device() == kCPU ? " (it moves CPU tensors; CUDA tensors need the NCCL backend)" : ""));
  }
  return absl::OkStatus();
}

absl::Status reducible(const Communicator& c, const char* op, const Tensor& t, bool bf16_ok) {
  CMOE_RETURN_IF_ERROR(device_is(c, op, t));
  DType d = t.dtype();
  if (d != DType::kF32 && d != DType::kI32 && d != DType::kI64 && !(bf16_ok && d == DType::kBF16)) {
    return absl::InvalidArgumentError(absl::StrCat(
        where(c, op), ": cannot reduce ", t.str(),
        bf16_ok ? "; reductions take f32, i32, i64 or bf16"
                : "; reductions take f32, i32 or i64 (reduce bf16 data in f32)"));
  }
  return absl::OkStatus();
}

absl::Status reduce_scatter_shapes(const Communicator& c, const Tensor& out, const Tensor& in,
                                   bool bf16_ok) {
  CMOE_RETURN_IF_ERROR(reducible(c, "reduce_scatter", in, bf16_ok));
  CMOE_RETURN_IF_ERROR(device_is(c, "reduce_scatter", out));
  if (out.dtype() != in.dtype() || in.numel() != out.numel() * c.size()) {
    return absl::InvalidArgumentError(absl::StrCat(where(c, "reduce_scatter"), ": in ", in.str(),
                                                   " must hold size (", c.size(), ") x out ",
                                                   out.str(), " elements of the same dtype"));
  }
  return absl::OkStatus();
}

absl::Status all_gather_shapes(const Communicator& c, const Tensor& out, const Tensor& in) {
  CMOE_RETURN_IF_ERROR(device_is(c, "all_gather", in));
  CMOE_RETURN_IF_ERROR(device_is(c, "all_gather", out));
  if (out.dtype() != in.dtype() || out.numel() != in.numel() * c.size()) {
    return absl::InvalidArgumentError(absl::StrCat(where(c, "all_gather"), ": out ", out.str(),
                                                   " must hold size (", c.size(), ") x in ",
                                                   in.str(), " elements of the same dtype"));
  }
  return absl::OkStatus();
}

absl::Status all_to_all_shapes(const Communicator& c, const Tensor& out, const Tensor& in) {
  CMOE_RETURN_IF_ERROR(device_is(c, "all_to_all", in));
  CMOE_RETURN_IF_ERROR(device_is(c, "all_to_all", out));
  if (out.dtype() != in.dtype() || out.numel() != in.numel() || in.numel() % c.size() != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        where(c, "all_to_all"), ": in ", in.str(), " and out ", out.str(),
        " must have the same dtype and element count, divisible by the group size ", c.size()));
  }
  return absl::OkStatus();
}

absl::Status all_to_all_v_shapes(const Communicator& c, const Tensor& out,
                                 std::span<const int64_t> recv_rows, const Tensor& in,
                                 std::span<const int64_t> send_rows, int64_t* row_elems) {
  const char* op = "all_to_all_v";
  CMOE_RETURN_IF_ERROR(device_is(c, op, in));
  CMOE_RETURN_IF_ERROR(device_is(c, op, out));
  const auto n = static_cast<size_t>(c.size());
  if (send_rows.size() != n || recv_rows.size() != n) {
    return absl::InvalidArgumentError(absl::StrCat(where(c, op), ": ", send_rows.size(),
                                                   " send and ", recv_rows.size(),
                                                   " recv counts for a group of ", n));
  }
  if (in.rank() == 0 || out.rank() == 0 || in.dtype() != out.dtype()) {
    return absl::InvalidArgumentError(absl::StrCat(where(c, op), ": in ", in.str(), " and out ",
                                                   out.str(), " need rank >= 1 and one dtype"));
  }
  int64_t in_row = trailing_elems(in), out_row = trailing_elems(out);
  int64_t sent = 0, received = 0;
  for (size_t j = 0; j < n; ++j) {
    if (send_rows[j] < 0 || recv_rows[j] < 0) {
      return absl::InvalidArgumentError(absl::StrCat(where(c, op), ": negative count for rank ", j));
    }
    sent += send_rows[j];
    received += recv_rows[j];
  }
  if (sent != in.dim(0) || received != out.dim(0)) {
    return absl::InvalidArgumentError(absl::StrCat(where(c, op), ": counts sum to ", sent,
                                                   " send / ", received, " recv rows but in is ",
                                                   in.str(), " and out is ", out.str()));
  }
  if (in_row != out_row) {
    return absl::InvalidArgumentError(absl::StrCat(where(c, op), ": row sizes differ: in ",
                                                   in.str(), ", out ", out.str()));
  }
  *row_elems = in_row;
  return absl::OkStatus();
}

absl::Status peer(const Communicator& c, const char* op, int p) {
  if (p < 0 || p >= c.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat(where(c, op), ": peer ", p, " is outside the group"));
  }
  return absl::OkStatus();
}

}  // namespace comm_check
}  // namespace cmoe::parallel
