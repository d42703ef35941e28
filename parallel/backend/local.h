// local.h — LocalCommunicator: the single-process backend (size 1).
//
// Exists so single-rank runs (and builds without a launcher) use the same code path as
// multi-rank ones: every collective has its size-1 meaning — all_reduce and broadcast leave
// the buffer as it is, reduce_scatter / all_gather / all_to_all(_v) copy in to out, a send
// to self is received by a matching receive (same tag) in the same batch_p2p. Argument checks
// are the MPI backend's for CPU tensors and the NCCL backend's for CUDA tensors (which also
// reduce bf16), so a shape bug shows up on one rank too.
#pragma once

#include <string>

#include "parallel/communicator.h"

namespace cmoe::parallel {

class LocalCommunicator final : public Communicator {
 public:
  explicit LocalCommunicator(std::string name = "world", Device device = kCPU)
      : name_(std::move(name)), device_(device) {}

  int rank() const override { return 0; }
  int size() const override { return 1; }
  int world_rank() const override { return 0; }
  const std::string& name() const override { return name_; }
  Device device() const override { return device_; }
  double timeout_s() const override { return timeout_s_; }
  void set_timeout_s(double seconds) override { timeout_s_ = seconds; }

  absl::StatusOr<std::unique_ptr<Communicator>> split(int color, int key,
                                                      const std::string& name) override;

  absl::StatusOr<CommWork> all_reduce_async(const Tensor& buf, ReduceOp op) override;
  absl::StatusOr<CommWork> reduce_scatter_async(const Tensor& out, const Tensor& in,
                                                ReduceOp op) override;
  absl::StatusOr<CommWork> all_gather_async(const Tensor& out, const Tensor& in) override;
  absl::StatusOr<CommWork> all_to_all_async(const Tensor& out, const Tensor& in) override;
  absl::StatusOr<CommWork> all_to_all_v_async(const Tensor& out,
                                              std::span<const int64_t> recv_rows,
                                              const Tensor& in,
                                              std::span<const int64_t> send_rows) override;
  absl::StatusOr<CommWork> broadcast_async(const Tensor& buf, int root) override;
  absl::StatusOr<CommWork> batch_p2p_async(std::span<const P2POp> ops) override;
  absl::StatusOr<CommWork> barrier_async() override;

 private:
  std::string name_;
  Device device_;
  double timeout_s_ = default_comm_timeout_s();  // unused: nothing here can wait
};

}  // namespace cmoe::parallel
