// staging.h — crossing between host and device data and communicators.
//
// all_reduce_host / all_to_all_host: small host tensors (token counts, router statistics, the
// per-rank row counts of the expert-parallel exchange) over a group whose communicator moves
// device tensors (NCCL): copied to the communicator's device, moved there and copied back. For a
// communicator of host tensors they are the plain operations, so CPU runs do exactly what they did.
//
// StagedCommunicator: device tensors over a communicator of host tensors (MPI), every operation
// staged through host copies and run blocking. It is the fallback of make_communicator when NCCL
// cannot serve a job — several ranks on one GPU (NCCL refuses a communicator with two ranks on
// one device), or a CUDA backend built without NCCL: slower (no overlap, two copies per
// transfer), with the same results. bf16 buffers reduce in f32 on the host (MPI has no bf16).
#pragma once

#include <memory>
#include <string>

#include "parallel/communicator.h"

namespace cmoe::parallel {

// buf (host) = op over the group of buf, whatever device `comm` moves.
absl::Status all_reduce_host(Communicator& comm, const Tensor& buf, ReduceOp op = ReduceOp::kSum);
// out (host) = the all_gather of in (host) over `comm`, whatever device it moves.
absl::Status all_gather_host(Communicator& comm, const Tensor& out, const Tensor& in);
// out (host) = the all_to_all of in (host) over `comm`, whatever device it moves.
absl::Status all_to_all_host(Communicator& comm, const Tensor& out, const Tensor& in);

class StagedCommunicator final : public Communicator {
 public:
  // host: a communicator of CPU tensors; device: where this one's tensors live.
  StagedCommunicator(std::unique_ptr<Communicator> host, Device device);

  int rank() const override { return host_->rank(); }
  int size() const override { return host_->size(); }
  int world_rank() const override { return host_->world_rank(); }
  const std::string& name() const override { return host_->name(); }
  Device device() const override { return device_; }
  double timeout_s() const override { return host_->timeout_s(); }
  void set_timeout_s(double seconds) override { host_->set_timeout_s(seconds); }
  Communicator& host() { return *host_; }

  absl::StatusOr<std::unique_ptr<Communicator>> split(int color, int key,
                                                      const std::string& name) override;
  // Every operation completes before it returns (the CommWork is already done).
  absl::StatusOr<CommWork> all_reduce_async(const Tensor& buf, ReduceOp op) override;
  absl::StatusOr<CommWork> reduce_scatter_async(const Tensor& out, const Tensor& in,
                                                ReduceOp op) override;
  absl::StatusOr<CommWork> all_gather_async(const Tensor& out, const Tensor& in) override;
  absl::StatusOr<CommWork> all_to_all_async(const Tensor& out, const Tensor& in) override;
  absl::StatusOr<CommWork> all_to_all_v_async(const Tensor& out, std::span<const int64_t> recv_rows,
                                              const Tensor& in,
                                              std::span<const int64_t> send_rows) override;
  absl::StatusOr<CommWork> broadcast_async(const Tensor& buf, int root) override;
  absl::StatusOr<CommWork> batch_p2p_async(std::span<const P2POp> ops) override;
  absl::StatusOr<CommWork> barrier_async() override;

 private:
  std::unique_ptr<Communicator> host_;
  Device device_;
};

}  // namespace cmoe::parallel
