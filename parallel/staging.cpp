// staging.cpp — host values over device communicators and device tensors over host
// communicators (see staging.h).
#include "parallel/staging.h"

#include <vector>

namespace cmoe::parallel {

namespace {

// A tensor on `device` with t's values (t itself when it is already there).
Tensor on(const Tensor& t, Device device) { return t.device() == device ? t : t.to(device); }

// Reductions of bf16 run in f32 on the host (MPI has no bf16 type).
Tensor host_reducible(const Tensor& t) {
  Tensor h = t.to(kCPU);
  return h.dtype() == DType::kBF16 ? h.to_dtype(DType::kF32) : h;
}

// Writes host values back into a device tensor (converting an f32 host buffer to bf16).
void write_back(const Tensor& dst, const Tensor& host) {
  Tensor h = dst.dtype() == host.dtype() ? host : host.to_dtype(dst.dtype());
  Tensor d = dst;
  d.copy_from(h);
}

}  // namespace

absl::Status all_reduce_host(Communicator& comm, const Tensor& buf, ReduceOp op) {
  if (comm.device() == buf.device()) return comm.all_reduce(buf, op);
  Tensor d = on(buf, comm.device());
  CMOE_RETURN_IF_ERROR(comm.all_reduce(d, op));
  Tensor b = buf;
  b.copy_from(d);
  return absl::OkStatus();
}

absl::Status all_gather_host(Communicator& comm, const Tensor& out, const Tensor& in) {
  if (comm.device() == in.device() && comm.device() == out.device()) return comm.all_gather(out, in);
  Tensor d_out = Tensor::empty(out.shape(), out.dtype(), comm.device());
  CMOE_RETURN_IF_ERROR(comm.all_gather(d_out, on(in, comm.device())));
  Tensor o = out;
  o.copy_from(d_out);
  return absl::OkStatus();
}

absl::Status all_to_all_host(Communicator& comm, const Tensor& out, const Tensor& in) {
  if (comm.device() == in.device() && comm.device() == out.device()) return comm.all_to_all(out, in);
  Tensor d_out = Tensor::empty(out.shape(), out.dtype(), comm.device());
  CMOE_RETURN_IF_ERROR(comm.all_to_all(d_out, on(in, comm.device())));
  Tensor o = out;
  o.copy_from(d_out);
  return absl::OkStatus();
}

StagedCommunicator::StagedCommunicator(std::unique_ptr<Communicator> host, Device device)
    : host_(std::move(host)), device_(device) {
  CMOE_CHECK(host_ != nullptr && host_->device().is_cpu(), "StagedCommunicator needs a communicator of CPU tensors");
}

absl::StatusOr<std::unique_ptr<Communicator>> StagedCommunicator::split(int color, int key, const std::string& name) {
  CMOE_ASSIGN_OR_RETURN(std::unique_ptr<Communicator> h, host_->split(color, key, name));
  return std::unique_ptr<Communicator>(std::make_unique<StagedCommunicator>(std::move(h), device_));
}

absl::StatusOr<CommWork> StagedCommunicator::all_reduce_async(const Tensor& buf, ReduceOp op) {
  CMOE_RETURN_IF_ERROR(comm_check::reducible(*this, "all_reduce", buf, /*bf16_ok=*/true));
  Tensor h = host_reducible(buf);
  CMOE_RETURN_IF_ERROR(host_->all_reduce(h, op));
  write_back(buf, h);
  return CommWork();
}

absl::StatusOr<CommWork> StagedCommunicator::reduce_scatter_async(const Tensor& out, const Tensor& in, ReduceOp op) {
  CMOE_RETURN_IF_ERROR(comm_check::reduce_scatter_shapes(*this, out, in, /*bf16_ok=*/true));
  Tensor hi = host_reducible(in);
  Tensor ho = Tensor::empty(out.shape(), hi.dtype());
  CMOE_RETURN_IF_ERROR(host_->reduce_scatter(ho, hi, op));
  write_back(out, ho);
  return CommWork();
}

absl::StatusOr<CommWork> StagedCommunicator::all_gather_async(const Tensor& out, const Tensor& in) {
  CMOE_RETURN_IF_ERROR(comm_check::all_gather_shapes(*this, out, in));
  Tensor ho = Tensor::empty(out.shape(), out.dtype());
  CMOE_RETURN_IF_ERROR(host_->all_gather(ho, in.to(kCPU)));
  write_back(out, ho);
  return CommWork();
}

absl::StatusOr<CommWork> StagedCommunicator::all_to_all_async(const Tensor& out, const Tensor& in) {
  CMOE_RETURN_IF_ERROR(comm_check::all_to_all_shapes(*this, out, in));
  Tensor ho = Tensor::empty(out.shape(), out.dtype());
  CMOE_RETURN_IF_ERROR(host_->all_to_all(ho, in.to(kCPU)));
  write_back(out, ho);
  return CommWork();
}

absl::StatusOr<CommWork> StagedCommunicator::all_to_all_v_async(const Tensor& out, std::span<const int64_t> recv_rows,
                                                                const Tensor& in, std::span<const int64_t> send_rows) {
  int64_t row = 0;
  CMOE_RETURN_IF_ERROR(comm_check::all_to_all_v_shapes(*this, out, recv_rows, in, send_rows, &row));
  Tensor ho = Tensor::empty(out.shape(), out.dtype());
  CMOE_RETURN_IF_ERROR(host_->all_to_all_v(ho, recv_rows, in.to(kCPU), send_rows));
  write_back(out, ho);
  return CommWork();
}

absl::StatusOr<CommWork> StagedCommunicator::broadcast_async(const Tensor& buf, int root) {
  CMOE_RETURN_IF_ERROR(comm_check::device_is(*this, "broadcast", buf));
  CMOE_RETURN_IF_ERROR(comm_check::peer(*this, "broadcast", root));
  Tensor h = buf.to(kCPU);
  CMOE_RETURN_IF_ERROR(host_->broadcast(h, root));
  write_back(buf, h);
  return CommWork();
}

absl::StatusOr<CommWork> StagedCommunicator::batch_p2p_async(std::span<const P2POp> ops) {
  std::vector<P2POp> host_ops;
  host_ops.reserve(ops.size());
  for (const P2POp& op : ops) {
    CMOE_RETURN_IF_ERROR(comm_check::device_is(*this, op.kind == P2POp::kSend ? "send" : "recv", op.tensor));
    host_ops.push_back({op.kind, op.kind == P2POp::kSend ? op.tensor.to(kCPU)
                                                          : Tensor::empty(op.tensor.shape(), op.tensor.dtype()),
                        op.peer, op.tag});
  }
  CMOE_RETURN_IF_ERROR(host_->batch_p2p(host_ops));
  for (size_t i = 0; i < ops.size(); ++i)
    if (ops[i].kind == P2POp::kRecv) write_back(ops[i].tensor, host_ops[i].tensor);
  return CommWork();
}

absl::StatusOr<CommWork> StagedCommunicator::barrier_async() {
  CMOE_RETURN_IF_ERROR(host_->barrier());
  return CommWork();
}

}  // namespace cmoe::parallel
