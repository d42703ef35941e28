// distributed.h — the model-side pieces of expert and data parallelism: the expert-parallel
// dispatch/combine as autograd operations, and the data-parallel gradient reducer.
//
// Expert parallelism (ep ranks, each owning experts owned_experts(E, ep, r) of every set):
//   dispatch: a token whose k choices land on ranks {j} is sent once to each such j, as its
//             row u[n] plus k weights (w[n, i] where expert idx[n, i] lives on j, else 0) and
//             k local expert ids (-1 where not on j);
//   local:    the received rows go through dispatch_experts (counting sort by local expert,
//             one grouped matmul per weight) — each row comes out as sum_i w_i FFN_i(u);
//   combine:  the rows go back to their senders, which add them into their tokens.
// Counts per destination are exchanged with all_to_all first; rows, weights and ids travel
// with all_to_all_v. The transfers are autograd nodes (all_to_all_v_op) whose backward is the
// reverse all_to_all_v, so backward mirrors forward with no extra bookkeeping.
//
// Data parallelism: GradReducer sums gradients over the data-parallel group (replicated
// parameters) or the expert-data-parallel group (expert slices) in buckets of about
// kBucketElems floats, launched (async all-reduce) in a fixed bucket order as soon as every
// parameter of the bucket has its final gradient — the model's grad-ready hook tells it during
// backward of the step's last micro-batch — and divides by dp. finish() launches what is left,
// waits for all, and writes the averaged gradients back.
#pragma once

#include <functional>
#include <vector>

#include "autograd/ops.h"
#include "moe/dispatch.h"
#include "moe/model.h"
#include "parallel/communicator.h"

namespace cmoe {

// out = in sent through comm.all_to_all_v (rows send_rows[j] to rank j, recv_rows[j] from j);
// backward sends the gradient back the same way with the counts swapped.
ag::Var all_to_all_v_op(const ag::Var& in, const std::vector<int64_t>& send_rows,
                        const std::vector<int64_t>& recv_rows, parallel::Communicator& comm);

// Expert-parallel routed FFN. u: (N, d); indices: (N, k) global expert ids (-1 = none);
// weights: (N, k); local: this rank's expert slice (owned_experts(num_experts, ep, rank) rows).
// Returns (N, d) = sum_i w_i FFN_{idx_i}(u), as dispatch_experts does on one rank.
// Collective over ep: every rank of the group must call it for the same layer.
ag::Var ep_dispatch_experts(const ag::Var& u, const Tensor& indices, const ag::Var& weights,
                            const ExpertWeights& local, int64_t num_experts, parallel::Communicator& ep,
                            DType compute_dtype);

class GradReducer {
 public:
  static constexpr int64_t kBucketElems = int64_t{1} << 22;  // 16 MiB of f32 per bucket

  // params: the model's (expert slices marked Param::expert); dp reduces the replicated ones,
  // edp the expert slices; divisor = the data-parallel size (global gradient = sum / dp).
  //
  // distributed (ZeRO-1, parallel.distributed_optimizer): each parameter has one owner in its
  // group (greedy by size within its bucket, the same answer on every rank); a bucket is laid
  // out owner by owner, padded to equal chunks, and reduce-scattered, so finish() leaves a
  // gradient on the owner only (the optimizer then updates and keeps moments for owned
  // parameters only) and gather_params() all-gathers the updated values afterwards.
  GradReducer(std::vector<Param>* params, parallel::Communicator* dp, parallel::Communicator* edp, int divisor,
              int64_t bucket_elems = kBucketElems, bool distributed = false);

  // For Model::set_grad_ready.
  std::function<void(size_t)> hook();
  // Launches any bucket not yet launched, waits for all, writes grad = sum / divisor into
  // every parameter (a parameter without a gradient counts as zero), and resets for the next
  // step.
  absl::Status finish();
  int num_buckets() const { return static_cast<int>(buckets_.size()); }
  // Distributed mode: whether this rank owns parameter i (always true otherwise).
  bool owns(size_t i) const { return owned_[i]; }
  const std::vector<bool>& owned() const { return owned_; }
  // Distributed mode: every parameter's value = its owner's (after the optimizer step).
  absl::Status gather_params();
  // Buckets launched from the hook (during backward) in the last finished step.
  int launched_during_backward() const { return overlapped_last_; }

 private:
  struct Bucket {
    std::vector<size_t> params;
    parallel::Communicator* comm = nullptr;
    int64_t elems = 0;
    // Distributed mode: params ordered owner by owner; offset of each in buf; chunk = the
    // padded per-rank length (buf has comm size * chunk elements).
    std::vector<int64_t> offset;
    int64_t chunk = 0;
    Tensor out;  // distributed mode: this rank's reduced chunk
    int pending = 0;  // params still waiting for their final gradient
    bool launched = false;
    Tensor buf;
    parallel::CommWork work;
  };
  void ready(size_t param);
  void launch_ready_in_order();
  absl::Status launch(Bucket& b);

  std::vector<Param>* params_;
  int divisor_;
  bool distributed_;
  std::vector<bool> owned_;
  std::vector<Bucket> buckets_;
  std::vector<int> bucket_of_;
  size_t next_launch_ = 0;  // buckets launch strictly in index order (same on every rank)
  int overlapped_ = 0, overlapped_last_ = 0;
  absl::Status error_;
};

}  // namespace cmoe
