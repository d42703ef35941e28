// process_groups.cpp — rank placement for a (pp, dp, ep) layout and the group communicators
// (see process_groups.h for the order).
#include "parallel/process_groups.h"

#include <algorithm>
#include <numeric>

namespace cmoe::parallel {

absl::Status validate_layout(const ParallelLayout& l, int world) {
  if (l.pp < 1 || l.dp < 1 || l.ep < 1) {
    return absl::InvalidArgumentError(absl::StrCat("parallel layout pp=", l.pp, " dp=", l.dp,
                                                   " ep=", l.ep, ": every size must be >= 1"));
  }
  if (static_cast<int64_t>(l.pp) * l.dp != world) {
    return absl::InvalidArgumentError(absl::StrCat(
        "parallel layout pp=", l.pp, " x dp=", l.dp, " = ", static_cast<int64_t>(l.pp) * l.dp,
        " ranks, but the job has ", world, " (launch with mpirun -np ",
        static_cast<int64_t>(l.pp) * l.dp, " or change parallel.pp / parallel.dp)"));
  }
  if (l.dp % l.ep != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "parallel layout: ep=", l.ep, " must divide dp=", l.dp,
        " (expert-parallel groups are carved out of each data-parallel group)"));
  }
  return absl::OkStatus();
}

absl::StatusOr<RankPlacement> place_rank(const ParallelLayout& l, int world, int rank) {
  CMOE_RETURN_IF_ERROR(validate_layout(l, world));
  if (rank < 0 || rank >= world) {
    return absl::InvalidArgumentError(absl::StrCat("rank ", rank, " outside world of ", world));
  }
  RankPlacement p;
  p.rank = rank;
  p.pp_rank = rank / l.dp;
  p.dp_rank = rank % l.dp;
  p.ep_rank = p.dp_rank % l.ep;
  p.edp_rank = p.dp_rank / l.ep;
  const int stage0 = p.pp_rank * l.dp;  // first world rank of this pipeline stage
  for (int j = 0; j < l.dp; ++j) p.dp_group.push_back(stage0 + j);
  for (int s = 0; s < l.pp; ++s) p.pp_group.push_back(s * l.dp + p.dp_rank);
  for (int j = 0; j < l.ep; ++j) p.ep_group.push_back(stage0 + p.edp_rank * l.ep + j);
  for (int b = 0; b < l.dp / l.ep; ++b) p.edp_group.push_back(stage0 + b * l.ep + p.ep_rank);
  return p;
}

ExpertRange owned_experts(int64_t n_experts, int ep, int ep_rank) {
  CMOE_CHECK(ep >= 1 && ep_rank >= 0 && ep_rank < ep && n_experts >= 0, "owned_experts: E=",
             n_experts, " ep=", ep, " ep_rank=", ep_rank);
  return {ep_rank * n_experts / ep, (ep_rank + 1) * n_experts / ep};
}

int expert_owner(int64_t n_experts, int ep, int64_t e) {
  CMOE_CHECK(e >= 0 && e < n_experts && ep >= 1, "expert_owner: e=", e, " E=", n_experts);
  // The smallest r whose range ends past e: floor((r + 1) E / ep) >= e + 1
  // <=> r >= ceil((e + 1) ep / E) - 1.
  return static_cast<int>(((e + 1) * ep - 1) / n_experts);
}

std::vector<int> balance_by_size(std::span<const int64_t> sizes, int n) {
  CMOE_CHECK(n >= 1, "balance_by_size: ", n, " owners");
  std::vector<size_t> order(sizes.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return sizes[a] > sizes[b]; });
  std::vector<int64_t> load(static_cast<size_t>(n), 0);
  std::vector<int> owner(sizes.size());
  for (size_t i : order) {
    const auto least = std::min_element(load.begin(), load.end());
    *least += sizes[i];
    owner[i] = static_cast<int>(least - load.begin());
  }
  return owner;
}

namespace {
// The group is identified by its first member (a world rank, so colors are distinct across
// groups); the key orders members by their place in the group.
absl::StatusOr<std::unique_ptr<Communicator>> split_into(Communicator& world,
                                                         const std::vector<int>& group,
                                                         int me, const char* name) {
  int key = 0;
  while (group[static_cast<size_t>(key)] != me) ++key;
  return world.split(group[0], key, name);
}
}  // namespace

CommCounters process_groups_counters(const ProcessGroups& g) {
  CommCounters c;
  for (const std::unique_ptr<Communicator>* comm : {&g.world, &g.dp, &g.pp, &g.ep, &g.edp})
    if (*comm != nullptr) c += (*comm)->counters();
  return c;
}

absl::StatusOr<ProcessGroups> make_process_groups(std::unique_ptr<Communicator> world,
                                                  const ParallelLayout& layout) {
  CMOE_CHECK(world != nullptr, "make_process_groups: no world communicator");
  ProcessGroups g;
  g.layout = layout;
  CMOE_ASSIGN_OR_RETURN(g.place, place_rank(layout, world->size(), world->rank()));
  g.comm_clock = std::make_shared<CommWaitClock>();
  world = make_timed_communicator(std::move(world), g.comm_clock);
  const int me = world->rank();
  CMOE_ASSIGN_OR_RETURN(g.dp, split_into(*world, g.place.dp_group, me, "dp"));
  CMOE_ASSIGN_OR_RETURN(g.pp, split_into(*world, g.place.pp_group, me, "pp"));
  CMOE_ASSIGN_OR_RETURN(g.ep, split_into(*world, g.place.ep_group, me, "ep"));
  CMOE_ASSIGN_OR_RETURN(g.edp, split_into(*world, g.place.edp_group, me, "edp"));
  g.world = std::move(world);
  return g;
}

absl::StatusOr<ProcessGroups> make_process_groups(std::unique_ptr<Communicator> world,
                                                  std::unique_ptr<Communicator> data_world,
                                                  const ParallelLayout& layout) {
  CMOE_CHECK(world != nullptr && data_world != nullptr && data_world->size() == world->size() &&
                 data_world->rank() == world->rank(),
             "make_process_groups: the data world must hold the world's ranks in its order");
  CMOE_ASSIGN_OR_RETURN(ProcessGroups g, make_process_groups(std::move(data_world), layout));
  g.data_world = std::move(g.world);
  g.world = make_timed_communicator(std::move(world), g.comm_clock);
  return g;
}

}  // namespace cmoe::parallel
