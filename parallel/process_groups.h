// process_groups.h — the (pp, dp, ep) layout: which ranks form which groups.
//
// world = pp * dp ranks, ordered pipeline-major (Megatron's order, tensor parallelism absent):
//
//     rank = pp_rank * dp + dp_rank          dp_rank = ep_block * ep + ep_rank
//
// - data-parallel group (dense parameters replicated): same pp_rank, all dp_rank.
// - pipeline group (one model replica's stages): same dp_rank, all pp_rank.
// - expert-parallel group (experts sharded): within a dp group, ep consecutive ranks (same
//   pp_rank and ep_block); ep divides dp.
// - expert-data-parallel group (ranks holding the same expert slice, whose expert gradients
//   are reduced together): same pp_rank and ep_rank, across the dp / ep blocks.
// The picture for world 8 = pp 2 x dp 4, ep 2 is in docs/parallelism.md.
//
// place_rank is a pure function of (layout, world, rank), so every layout is testable without
// launching its ranks; make_process_groups builds the communicators by splitting the world.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "parallel/communicator.h"
#include "parallel/timed_communicator.h"

namespace cmoe::parallel {

struct ParallelLayout {
  int pp = 1;  // pipeline stages
  int dp = 1;  // data-parallel replicas (per stage)
  int ep = 1;  // expert-parallel ranks, carved out of dp
};

// OK when pp, dp, ep >= 1, world == pp * dp and ep divides dp; else InvalidArgument naming
// the values.
absl::Status validate_layout(const ParallelLayout& layout, int world);

// Where one rank sits; every group lists world ranks in group-rank order.
struct RankPlacement {
  int rank = 0;
  int pp_rank = 0, dp_rank = 0, ep_rank = 0;
  int edp_rank = 0;  // = ep_block, the index of this rank's block of ep ranks in its dp group
  std::vector<int> dp_group, pp_group, ep_group, edp_group;
};

absl::StatusOr<RankPlacement> place_rank(const ParallelLayout& layout, int world, int rank);

// Experts [begin, end) owned by ep_rank: [ep_rank * E / ep, (ep_rank + 1) * E / ep) with
// integer division, so every expert has exactly one owner and shares differ by at most one
// when ep does not divide E.
struct ExpertRange {
  int64_t begin = 0, end = 0;
  int64_t size() const { return end - begin; }
};
ExpertRange owned_experts(int64_t n_experts, int ep, int ep_rank);
// The ep_rank owning expert e (the inverse of owned_experts).
int expert_owner(int64_t n_experts, int ep, int64_t e);

// Items of the given sizes spread over n owners: largest first (ties in index order), each to
// the owner with the least so far (the lowest rank on ties). Deterministic, so every rank
// computes the same answer; used for ZeRO-1 parameter owners and checkpoint writers.
std::vector<int> balance_by_size(std::span<const int64_t> sizes, int n);

// The communicators of one rank. Each group communicator is a split of `world`, named
// "dp", "pp", "ep" and "edp" in messages. All of them are timed into comm_clock: the seconds
// this rank has spent in communication calls (parallel/timed_communicator.h).
// On a GPU job `world` stays the host communicator (control traffic: checkpoint agreement, the
// step's scalars, barriers) while dp, pp, ep and edp are split from a device communicator
// (data_world, from make_communicator) that moves the activations and gradients.
struct ProcessGroups {
  ParallelLayout layout;
  RankPlacement place;
  std::unique_ptr<Communicator> world, dp, pp, ep, edp;
  std::unique_ptr<Communicator> data_world;  // null: the groups are splits of world
  std::shared_ptr<CommWaitClock> comm_clock;
};

// This rank's traffic counters summed over its five communicators (world, dp, pp, ep, edp).
CommCounters process_groups_counters(const ProcessGroups& g);

// Within its scope, the five communicators count nothing (Communicator::set_uncounted): for
// collectives that only report metrics.
class UncountedScope {
 public:
  explicit UncountedScope(const ProcessGroups* g) : g_(g) { set(true); }
  ~UncountedScope() { set(false); }
  UncountedScope(const UncountedScope&) = delete;
  UncountedScope& operator=(const UncountedScope&) = delete;

 private:
  void set(bool on) const {
    if (g_ == nullptr) return;
    for (const std::unique_ptr<Communicator>* c : {&g_->world, &g_->dp, &g_->pp, &g_->ep, &g_->edp})
      if (*c != nullptr) (*c)->set_uncounted(on);
  }
  const ProcessGroups* g_;
};

// Collective over `world`: validates the layout against world->size(), wraps it in a timed
// communicator and splits.
absl::StatusOr<ProcessGroups> make_process_groups(std::unique_ptr<Communicator> world,
                                                  const ParallelLayout& layout);
// The same with the groups split from data_world (the same ranks in the same order as world).
absl::StatusOr<ProcessGroups> make_process_groups(std::unique_ptr<Communicator> world,
                                                  std::unique_ptr<Communicator> data_world,
                                                  const ParallelLayout& layout);

}  // namespace cmoe::parallel
