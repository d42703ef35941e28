// process_groups_test.cpp — the (pp, dp, ep) layout as a pure function of (layout, world,
// rank): every rank of several layouts (worlds 1 to 16) is placed without launching it, and
// the groups are checked against their definitions and against each other.
#include <algorithm>
#include <map>
#include <set>

#include "gtest/gtest.h"
#include "parallel/process_groups.h"

namespace cmoe::parallel {
namespace {

RankPlacement place(const ParallelLayout& l, int world, int rank) {
  auto p = place_rank(l, world, rank);
  CMOE_CHECK(p.ok(), p.status().ToString());
  return *p;
}

TEST(ProcessGroups, DrawnExampleWorld8Pp2Dp4Ep2) {
  // docs/parallelism.md draws this layout; the numbers here are the picture's.
  ParallelLayout l{2, 4, 2};
  RankPlacement r5 = place(l, 8, 5);
  EXPECT_EQ(r5.pp_rank, 1);
  EXPECT_EQ(r5.dp_rank, 1);
  EXPECT_EQ(r5.ep_rank, 1);
  EXPECT_EQ(r5.edp_rank, 0);
  EXPECT_EQ(r5.dp_group, (std::vector<int>{4, 5, 6, 7}));
  EXPECT_EQ(r5.pp_group, (std::vector<int>{1, 5}));
  EXPECT_EQ(r5.ep_group, (std::vector<int>{4, 5}));
  EXPECT_EQ(r5.edp_group, (std::vector<int>{5, 7}));
  RankPlacement r2 = place(l, 8, 2);
  EXPECT_EQ(r2.ep_group, (std::vector<int>{2, 3}));
  EXPECT_EQ(r2.edp_group, (std::vector<int>{0, 2}));
  EXPECT_EQ(r2.pp_group, (std::vector<int>{2, 6}));
}

// For every rank: the rank formula, each group containing the rank at its group rank, and
// all members of a group agreeing on that group (so the groups partition the world).
void check_layout(const ParallelLayout& l) {
  const int world = l.pp * l.dp;
  SCOPED_TRACE(testing::Message() << "pp=" << l.pp << " dp=" << l.dp << " ep=" << l.ep);
  std::vector<RankPlacement> all;
  for (int r = 0; r < world; ++r) all.push_back(place(l, world, r));
  std::map<std::string, std::set<std::vector<int>>> distinct;
  for (const RankPlacement& p : all) {
    EXPECT_EQ(p.rank, p.pp_rank * l.dp + p.dp_rank);
    EXPECT_EQ(p.dp_rank, p.edp_rank * l.ep + p.ep_rank);
    EXPECT_EQ(p.dp_group.size(), static_cast<size_t>(l.dp));
    EXPECT_EQ(p.pp_group.size(), static_cast<size_t>(l.pp));
    EXPECT_EQ(p.ep_group.size(), static_cast<size_t>(l.ep));
    EXPECT_EQ(p.edp_group.size(), static_cast<size_t>(l.dp / l.ep));
    EXPECT_EQ(p.dp_group[p.dp_rank], p.rank);
    EXPECT_EQ(p.pp_group[p.pp_rank], p.rank);
    EXPECT_EQ(p.ep_group[p.ep_rank], p.rank);
    EXPECT_EQ(p.edp_group[p.edp_rank], p.rank);
    for (int m : p.dp_group) EXPECT_EQ(all[m].pp_rank, p.pp_rank);
    for (int m : p.pp_group) EXPECT_EQ(all[m].dp_rank, p.dp_rank);
    for (int m : p.ep_group) EXPECT_EQ(all[m].dp_rank / l.ep, p.edp_rank);
    for (int m : p.edp_group) {
      const RankPlacement& q = all[m];
      EXPECT_EQ(q.ep_rank, p.ep_rank);
      EXPECT_EQ(q.pp_rank, p.pp_rank);
    }
    // The same group seen from each member is the same list.
    for (int m : p.dp_group) EXPECT_EQ(all[m].dp_group, p.dp_group);
    for (int m : p.ep_group) EXPECT_EQ(all[m].ep_group, p.ep_group);
    for (int m : p.edp_group) EXPECT_EQ(all[m].edp_group, p.edp_group);
    for (int m : p.pp_group) EXPECT_EQ(all[m].pp_group, p.pp_group);
    distinct["dp"].insert(p.dp_group);
    distinct["pp"].insert(p.pp_group);
    distinct["ep"].insert(p.ep_group);
    distinct["edp"].insert(p.edp_group);
  }
  EXPECT_EQ(distinct["dp"].size(), static_cast<size_t>(l.pp));
  EXPECT_EQ(distinct["pp"].size(), static_cast<size_t>(l.dp));
  EXPECT_EQ(distinct["ep"].size(), static_cast<size_t>(world / l.ep));
  EXPECT_EQ(distinct["edp"].size(), static_cast<size_t>(l.pp * l.ep));
}

TEST(ProcessGroups, EveryRankOfManyLayouts) {
  for (ParallelLayout l : std::vector<ParallelLayout>{
           {1, 1, 1}, {1, 2, 1}, {1, 2, 2}, {2, 1, 1}, {1, 4, 2}, {2, 2, 2}, {4, 1, 1}, {1, 4, 4},
           {2, 4, 2}, {2, 4, 4}, {4, 2, 1}, {8, 1, 1}, {1, 8, 2}, {2, 8, 4}, {4, 4, 2}}) {
    check_layout(l);
  }
}

TEST(ProcessGroups, ValidationNamesTheValues) {
  absl::Status s = validate_layout({2, 2, 1}, 8);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("pp=2 x dp=2 = 4 ranks, but the job has 8"), std::string::npos) << s;
  s = validate_layout({1, 4, 3}, 4);
  EXPECT_NE(s.message().find("ep=3 must divide dp=4"), std::string::npos) << s;
  s = validate_layout({0, 4, 1}, 0);
  EXPECT_NE(s.message().find("pp=0"), std::string::npos) << s;
  EXPECT_FALSE(place_rank({1, 4, 2}, 4, 4).ok());
  EXPECT_FALSE(place_rank({1, 4, 2}, 4, -1).ok());
}

TEST(ProcessGroups, ExpertOwnershipPartitionsTheExperts) {
  EXPECT_EQ(owned_experts(16, 4, 1).begin, 4);
  EXPECT_EQ(owned_experts(16, 4, 1).end, 8);
  for (int64_t e_count : {1, 2, 3, 7, 8, 16, 33, 64}) {
    for (int ep : {1, 2, 3, 4, 8}) {
      std::vector<int> owners(static_cast<size_t>(e_count), -1);
      int64_t smallest = e_count, largest = 0;
      for (int r = 0; r < ep; ++r) {
        ExpertRange x = owned_experts(e_count, ep, r);
        EXPECT_EQ(x.begin, r * e_count / ep);
        smallest = std::min(smallest, x.size());
        largest = std::max(largest, x.size());
        for (int64_t e = x.begin; e < x.end; ++e) {
          EXPECT_EQ(owners[e], -1) << "expert " << e << " owned twice";
          owners[e] = r;
        }
      }
      for (int64_t e = 0; e < e_count; ++e) {
        EXPECT_NE(owners[e], -1) << "E=" << e_count << " ep=" << ep << ": expert " << e << " unowned";
        EXPECT_EQ(expert_owner(e_count, ep, e), owners[e]) << "E=" << e_count << " ep=" << ep << " e=" << e;
      }
      EXPECT_LE(largest - smallest, 1);
    }
  }
}

// Largest first to the least-loaded owner, lowest rank on ties: the owners ZeRO-1 and the
// checkpoint writers use, identical on every rank.
TEST(BalanceBySize, LargestFirstToLeastLoaded) {
  const std::vector<int64_t> sizes = {5, 9, 1, 9, 3};
  // 9 (#1) -> 0, 9 (#3) -> 1, 5 (#0) -> 0 (tie 9:9), 3 (#4) -> 1 (14:9), 1 (#2) -> 1 (14:12).
  EXPECT_EQ(balance_by_size(sizes, 2), (std::vector<int>{0, 0, 1, 1, 1}));
  EXPECT_EQ(balance_by_size(sizes, 1), (std::vector<int>(5, 0)));
  EXPECT_EQ(balance_by_size(sizes, 8), (std::vector<int>{2, 0, 4, 1, 3}));
  EXPECT_TRUE(balance_by_size({}, 3).empty());
}

}  // namespace
}  // namespace cmoe::parallel
