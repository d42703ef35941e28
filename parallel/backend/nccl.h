// nccl.h — NcclCommunicator: the CUDA-tensor backend over NCCL (>= 2.18), bootstrapped over a
// CPU communicator (MPI). Built everywhere: its NCCL and CUDA calls go through the CUDA plugin
// (core/cuda/cuda_api.h), which create() loads; without a plugin, or with one built without
// NCCL, creation fails on every rank with the reason.
//
// One rank, one process, one GPU: NCCL does not support two ranks of one communicator on the
// same device. make_communicator (communicator.h) picks the device, local_cuda_device().
//
// Bootstrap. create() is collective over `bootstrap`: each rank selects its device
// (cuda::init) and rank 0 draws an ncclUniqueId; the ranks then agree that every one of them
// succeeded (an all_reduce over bootstrap, so one rank's failure is every rank's error rather
// than a hang), rank 0 broadcasts the id's 128 bytes over bootstrap, and each rank calls
// ncclCommInitRankConfig in non-blocking mode (config.blocking = 0) and polls
// ncclCommGetAsyncError against the deadline.
//
// Streams. Operations are enqueued on the communicator's own stream, created non-blocking so
// that copies on the legacy default stream never queue behind a collective stalled on a peer
// (a blocking cudaMemcpy has no deadline). Before enqueueing, that stream waits for an event
// recorded on the compute stream (set_compute_stream; default: the legacy default stream,
// where cmoe's host<->device copies run, and which cmoe's blocking compute streams
// synchronise with), so an operation reads its inputs only after the work queued before it.
// Each CommWork records an event after its operation; wait() returns once the host has seen
// it, so the results are then complete for every stream and for the host. The CommWork keeps
// the tensors alive until then (the caching allocator may hand out a freed block at once).
//
// Deadlines and errors. wait() polls cudaEventQuery and ncclCommGetAsyncError with the waiting
// policy of deadline.h; initialisation, split, teardown and enqueueing (a non-blocking NCCL
// call may return ncclInProgress, after which the communicator must be polled until it
// settles) are polled the same way. When a deadline passes the rank prints host, world rank,
// operation, group and elapsed time, aborts its NCCL communicator (ncclCommAbort) and ends the
// job (kCommTimeoutExitCode) — except at teardown, where it only aborts the NCCL communicator
// and says so. An NCCL or CUDA error aborts the NCCL communicator and returns Internal; the
// communicator then refuses further operations (FailedPrecondition).
//
// Differences from the MPI backend: NCCL has no tags — the k-th send to a peer matches that
// peer's k-th receive from this rank, in posting order (a tag must be >= 0 and is otherwise
// unused); a send and its receive must have the same byte size. all_reduce and reduce_scatter
// also take bf16 (NCCL reduces bf16 natively). Messages of zero bytes are not posted (both
// sides skip them, so the pairing above is unchanged).
//
// Threading: call a communicator from one thread at a time, as for MPI.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/cuda/stream.h"
#include "parallel/communicator.h"

namespace cmoe::parallel {

class NcclCommunicator final : public Communicator {
 public:
  // An NCCL communicator over the ranks of `bootstrap` (a CPU communicator, same rank order),
  // this rank on CUDA device `cuda_device`. Collective over `bootstrap`; takes its timeout.
  static absl::StatusOr<std::unique_ptr<NcclCommunicator>> create(Communicator& bootstrap,
                                                                  int cuda_device,
                                                                  std::string name = "world");
  // Finalises the NCCL communicator (flushing its operations, polled against the timeout),
  // or aborts it after an error or a timeout. In-flight CommWorks keep it alive until done.
  ~NcclCommunicator() override;
  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  int world_rank() const override { return world_ranks_[static_cast<size_t>(rank_)]; }
  const std::string& name() const override { return name_; }
  Device device() const override { return cuda_device(cuda_device_); }
  double timeout_s() const override;
  void set_timeout_s(double seconds) override;
  // World rank of each group rank, for messages and tests.
  const std::vector<int>& world_ranks() const { return world_ranks_; }
  int cuda_device_index() const { return cuda_device_; }

  // The stream this communicator's operations run on.
  cuda::StreamHandle comm_stream() const;
  // Operations posted from now on wait for the work queued on `stream` (a stream of this
  // communicator's device) before them; see the header comment. Inherited by split().
  void set_compute_stream(cuda::StreamHandle stream) { compute_stream_ = stream; }
  cuda::StreamHandle compute_stream() const { return compute_stream_; }

  // ncclCommSplit (non-blocking, polled); the new communicator keeps this one's timeout and
  // compute stream. color must be >= 0.
  absl::StatusOr<std::unique_ptr<Communicator>> split(int color, int key,
                                                      const std::string& name) override;

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
  // An all_reduce of one i32 on the device.
  absl::StatusOr<CommWork> barrier_async() override;

 private:
  friend absl::StatusOr<std::unique_ptr<Communicator>> make_nccl_communicator(
      Communicator&, const absl::StatusOr<int>&, const std::string&);
  struct State;
  class Work;
  // create() for a device that may be unknown: a rank whose device lookup failed still takes
  // part in the agreement step, so every rank returns the error.
  static absl::StatusOr<std::unique_ptr<NcclCommunicator>> create_on(
      Communicator& bootstrap, const absl::StatusOr<int>& device, std::string name);
  NcclCommunicator(std::shared_ptr<State> state, std::string name, int rank, int size,
                   std::vector<int> world_ranks, int cuda_device);

  // Orders the communicator's stream after the compute stream, runs `calls` (NCCL calls on
  // comm_stream(), between ncclGroupStart and ncclGroupEnd; returns the first failure), waits
  // for a non-blocking group to settle, and records the completion event.
  template <typename Calls>
  absl::StatusOr<CommWork> enqueue(std::string what, std::vector<Tensor> keep, Calls&& calls);
  // The grouped ncclSend/ncclRecv behind all_to_all and all_to_all_v: send_rows[j] rows of
  // `in` go to rank j and recv_rows[j] rows from rank j land in `out`, both in rank order; a
  // row is row_bytes bytes.
  absl::StatusOr<CommWork> exchange_rows(std::string what, const Tensor& out,
                                         std::span<const int64_t> recv_rows, const Tensor& in,
                                         std::span<const int64_t> send_rows, size_t row_bytes);

  std::shared_ptr<State> state_;  // the ncclComm_t and streams, shared with in-flight work
  std::string name_;
  int rank_ = 0, size_ = 1;
  std::vector<int> world_ranks_;
  int cuda_device_ = 0;
  cuda::StreamHandle compute_stream_ = cuda::kLegacyStream;
  Tensor barrier_buf_;  // (1) i32 on the device
};

// An NcclCommunicator over `bootstrap` on `device` (an error there still takes part in the
// agreement step, so every rank returns it). make_communicator's NCCL branch.
absl::StatusOr<std::unique_ptr<Communicator>> make_nccl_communicator(Communicator& bootstrap,
                                                                     const absl::StatusOr<int>& device,
                                                                     const std::string& name);

}  // namespace cmoe::parallel
