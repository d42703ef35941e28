// mpi.h — MpiCommunicator: the CPU-tensor backend over Open MPI (MPI-3.1 nonblocking
// collectives), and process-wide MPI set-up.
//
// Every operation is posted nonblocking (MPI_Iallreduce, MPI_Ialltoallv, MPI_Isend, ...) and
// completed by polling MPI_Testall against a deadline of timeout_s() seconds from posting,
// with the shared waiting policy of deadline.h: spinning for the first 100 ms (as blocking MPI
// does; not at all when the node has more ranks than cores), then yielding the core, then
// sleeping 1 ms between polls once the wait exceeds a second, so a rank waiting on a slow peer
// does not starve its neighbours. When the deadline passes the rank prints who it is (host,
// world rank), the operation, the group and the elapsed time, and calls
// MPI_Abort(MPI_COMM_WORLD, kCommTimeoutExitCode): the launcher then ends every rank, so
// nothing hangs.
//
// Each MpiCommunicator owns its MPI_Comm (freed in the destructor) with MPI_ERRORS_RETURN
// set, so MPI errors come back as Status carrying MPI_Error_string's text. Destroy
// communicators before MPI is finalised (mpi_init registers MPI_Finalize with atexit).
// Threading: MPI_THREAD_FUNNELED — call communicators from the thread that initialised MPI.
#pragma once

#include <mpi.h>

#include <climits>
#include <string>
#include <vector>

#include "parallel/backend/deadline.h"
#include "parallel/communicator.h"

namespace cmoe::parallel {

// Initialises MPI once per process (later calls are no-ops) with MPI_THREAD_FUNNELED, sets
// MPI_ERRORS_RETURN on MPI_COMM_WORLD and registers MPI_Finalize to run at exit.
absl::Status mpi_init(int* argc, char*** argv);

// This process's rank among the ranks on its node (MPI_COMM_TYPE_SHARED); picks a GPU.
absl::StatusOr<int> mpi_local_rank();

std::string host_name();

// The job's host world: an MpiCommunicator under an MPI launcher (initialising MPI), else a
// LocalCommunicator. make_communicator's host branch.
absl::StatusOr<std::unique_ptr<Communicator>> make_host_world_communicator();

class MpiCommunicator final : public Communicator {
 public:
  // A communicator over a duplicate of MPI_COMM_WORLD (needs mpi_init first).
  static absl::StatusOr<std::unique_ptr<MpiCommunicator>> world(const std::string& name = "world");

  // Takes ownership of `comm` (must not be MPI_COMM_WORLD/SELF; freed in the destructor).
  MpiCommunicator(MPI_Comm comm, std::string name, double timeout_s);
  ~MpiCommunicator() override;
  MpiCommunicator(const MpiCommunicator&) = delete;
  MpiCommunicator& operator=(const MpiCommunicator&) = delete;

  MPI_Comm comm() const { return comm_; }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  int world_rank() const override { return world_ranks_[static_cast<size_t>(rank_)]; }
  const std::string& name() const override { return name_; }
  Device device() const override { return kCPU; }
  double timeout_s() const override { return timeout_s_; }
  void set_timeout_s(double seconds) override { timeout_s_ = seconds; }
  // World rank of each group rank, for messages and tests.
  const std::vector<int>& world_ranks() const { return world_ranks_; }
  // Largest element count per MPI call; larger all_reduce / broadcast / send / recv buffers
  // are split into several calls. INT_MAX (MPI's count type) unless a test lowers it.
  void set_max_chunk_elems(int64_t n) { max_chunk_elems_ = n; }

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
  class Work;
  std::unique_ptr<Work> start_work(std::string what) const;
  absl::Status count_fits(const char* op, int64_t count) const;

  MPI_Comm comm_ = MPI_COMM_NULL;
  std::string name_;
  double timeout_s_;
  int rank_ = 0, size_ = 1;
  std::vector<int> world_ranks_;
  int tag_ub_ = 32767;  // the MPI minimum; replaced by MPI_TAG_UB
  int64_t max_chunk_elems_ = INT_MAX;
};

}  // namespace cmoe::parallel
