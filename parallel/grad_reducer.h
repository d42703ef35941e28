// grad_reducer.h — data-parallel gradient reduction: bucketed all-reduce (or, for ZeRO-1,
// reduce-scatter to one owner per parameter and all-gather of the updated values).
//
// GradReducer sums gradients over the data-parallel group (replicated parameters) or the
// expert-data-parallel group (expert slices) in buckets of about kBucketElems floats,
// launched (async all-reduce) in a fixed bucket order as soon as every parameter of the
// bucket has its final gradient — the model's grad-ready hook tells it during backward of the
// step's last micro-batch — and divides by dp. finish() launches what is left, waits for all,
// and writes the averaged gradients back.
#pragma once

#include <functional>
#include <span>
#include <vector>

#include "autograd/param.h"
#include "parallel/communicator.h"

namespace cmoe::parallel {

// The bucket layout GradReducer uses, as a pure function of the parameters' sizes, so it can
// be computed without communicators (`cmoe plan` predicts the reducer's traffic and ZeRO-1's
// per-rank optimizer state from it).
//
// Parameters are taken in reverse order (the order backward completes their gradients, head
// first), each group (replicated / expert slice) filling its own open bucket until the next
// parameter would pass bucket_elems. Distributed (ZeRO-1): within a bucket, owners by
// balance_by_size over the group's ranks, the bucket laid out owner by owner, each owner's
// chunk padded to the largest.
struct GradBucket {
  bool expert = false;          // the expert-data-parallel group's bucket (else data-parallel)
  std::vector<size_t> params;   // parameter indices (distributed: owner by owner)
  std::vector<int64_t> offset;  // distributed: offset of each parameter in the bucket
  std::vector<int> owner;       // distributed: the owning group rank of each parameter
  int64_t elems = 0;            // f32 elements of the bucket buffer (distributed: chunk * size)
  int64_t chunk = 0;            // distributed: padded elements per group rank
};
// numel[i], expert[i]: parameter i's element count and whether it is an expert slice;
// dp_size / edp_size: the group sizes the buckets are laid out for (ownership needs them).
std::vector<GradBucket> grad_bucket_plan(std::span<const int64_t> numel, const std::vector<bool>& expert,
                                         int dp_size, int edp_size, int64_t bucket_elems, bool distributed);

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
  GradReducer(std::vector<Param>* params, Communicator* dp, Communicator* edp, int divisor,
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
    Communicator* comm = nullptr;
    int64_t elems = 0;
    // Distributed mode: params ordered owner by owner; offset of each in buf; chunk = the
    // padded per-rank length (buf has comm size * chunk elements).
    std::vector<int64_t> offset;
    int64_t chunk = 0;
    Tensor out;  // distributed mode: this rank's reduced chunk
    int pending = 0;  // params still waiting for their final gradient
    bool launched = false;
    Tensor buf;
    CommWork work;
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

}  // namespace cmoe::parallel
