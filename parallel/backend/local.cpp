// local.cpp — LocalCommunicator: size-1 collectives as copies (see local.h).
#include "parallel/backend/local.h"

#include <vector>

namespace cmoe::parallel {

namespace {
// out = in, tolerating out and in being the same view (in-place use of a collective).
void copy_rows(const Tensor& out, const Tensor& in) {
  if (in.numel() == 0) return;
  if (out.same_storage(in) && out.raw_data() == in.raw_data()) return;
  out.view(in.shape()).copy_from(in);
}
}  // namespace

absl::StatusOr<std::unique_ptr<Communicator>> LocalCommunicator::split(int /*color*/, int /*key*/,
                                                                       const std::string& name) {
  auto c = std::make_unique<LocalCommunicator>(name, device_);
  c->set_timeout_s(timeout_s_);
  return std::unique_ptr<Communicator>(std::move(c));
}

absl::StatusOr<CommWork> LocalCommunicator::all_reduce_async(const Tensor& buf, ReduceOp /*op*/) {
  // bf16 reduces on CUDA tensors, as with NCCL, so GPU code runs the same on one rank.
  CMOE_RETURN_IF_ERROR(comm_check::reducible(*this, "all_reduce", buf, device_.is_cuda()));
  return CommWork();
}

absl::StatusOr<CommWork> LocalCommunicator::reduce_scatter_async(const Tensor& out, const Tensor& in,
                                                                 ReduceOp /*op*/) {
  CMOE_RETURN_IF_ERROR(comm_check::reduce_scatter_shapes(*this, out, in, device_.is_cuda()));
  copy_rows(out, in);
  return CommWork();
}

absl::StatusOr<CommWork> LocalCommunicator::all_gather_async(const Tensor& out, const Tensor& in) {
  CMOE_RETURN_IF_ERROR(comm_check::all_gather_shapes(*this, out, in));
  copy_rows(out, in);
  return CommWork();
}

absl::StatusOr<CommWork> LocalCommunicator::all_to_all_async(const Tensor& out, const Tensor& in) {
  CMOE_RETURN_IF_ERROR(comm_check::all_to_all_shapes(*this, out, in));
  copy_rows(out, in);
  return CommWork();
}

absl::StatusOr<CommWork> LocalCommunicator::all_to_all_v_async(const Tensor& out,
                                                               std::span<const int64_t> recv_rows,
                                                               const Tensor& in,
                                                               std::span<const int64_t> send_rows) {
  int64_t row = 0;
  CMOE_RETURN_IF_ERROR(comm_check::all_to_all_v_shapes(*this, out, recv_rows, in, send_rows, &row));
  if (send_rows[0] != recv_rows[0]) {
    return absl::InvalidArgumentError(absl::StrCat("all_to_all_v on communicator '", name_,
                                                   "' (size 1): sending ", send_rows[0],
                                                   " rows to self but receiving ", recv_rows[0]));
  }
  copy_rows(out, in);
  return CommWork();
}

absl::StatusOr<CommWork> LocalCommunicator::broadcast_async(const Tensor& buf, int root) {
  CMOE_RETURN_IF_ERROR(comm_check::device_is(*this, "broadcast", buf));
  CMOE_RETURN_IF_ERROR(comm_check::peer(*this, "broadcast", root));
  return CommWork();
}

absl::StatusOr<CommWork> LocalCommunicator::batch_p2p_async(std::span<const P2POp> ops) {
  // Pair each receive with the first unused send of the same tag, as MPI's in-order matching
  // does for messages to self.
  std::vector<bool> used(ops.size(), false);
  for (const P2POp& op : ops) {
    const char* what = op.kind == P2POp::kSend ? "send" : "recv";
    CMOE_RETURN_IF_ERROR(comm_check::device_is(*this, what, op.tensor));
    CMOE_RETURN_IF_ERROR(comm_check::peer(*this, what, op.peer));
  }
  for (size_t i = 0; i < ops.size(); ++i) {
    if (ops[i].kind != P2POp::kRecv) continue;
    size_t j = 0;
    while (j < ops.size() && (used[j] || ops[j].kind != P2POp::kSend || ops[j].tag != ops[i].tag)) ++j;
    if (j == ops.size()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "recv (tag ", ops[i].tag, ") on communicator '", name_,
          "' (size 1) has no matching send to self in the same batch_p2p; it would never complete"));
    }
    const Tensor& src = ops[j].tensor;
    if (src.dtype() != ops[i].tensor.dtype() || src.numel() != ops[i].tensor.numel()) {
      return absl::InvalidArgumentError(absl::StrCat("recv (tag ", ops[i].tag, ") into ",
                                                     ops[i].tensor.str(), " from a send of ",
                                                     src.str(), " on communicator '", name_, "'"));
    }
    used[j] = true;
    copy_rows(ops[i].tensor, src);
  }
  for (size_t j = 0; j < ops.size(); ++j) {
    if (ops[j].kind == P2POp::kSend && !used[j]) {
      return absl::FailedPreconditionError(absl::StrCat(
          "send (tag ", ops[j].tag, ") on communicator '", name_,
          "' (size 1) has no matching recv from self in the same batch_p2p; it would never complete"));
    }
  }
  return CommWork();
}

absl::StatusOr<CommWork> LocalCommunicator::barrier_async() { return CommWork(); }

}  // namespace cmoe::parallel
