// plan_ranks_test.cpp — the layout planner (moe/train/plan.h) against real training steps under
// mpirun (CTest: -np 2 and -np 4), every rank checking its own plan_rank:
//   - communication: per group (world, dp, pp, ep, edp) and per kind of operation, the calls
//     and bytes the communicators count in a step (parallel::CommCounters) equal the plan's
//     exactly; the token rows of expert parallelism, which depend on routing, equal it exactly
//     when routing leaves no choice (every token on every rank: top_k = num_experts) and lie
//     within the plan's [min, max] otherwise;
//   - memory: parameter, gradient (at the end of backward) and AdamW bytes equal the plan's
//     exactly, with and without ZeRO-1; the step's allocator high-water mark within 15% of the
//     plan's peak.
// Layouts of tiny: np 2 (1,2,1) (1,2,2) (2,1,1); np 4 (1,4,2) (1,4,4) (2,2,1) (2,2,2); each with
// and without ZeRO-1 where dp > 1, in a few configurations. Mismatches are summed over ranks.
#include <cmath>
#include <cstdio>
#include <map>

#include "absl/strings/str_cat.h"
#include "core/allocator.h"
#include "core/rng.h"
#include "gtest/gtest.h"
#include "moe/train/config.h"
#include "moe/train/optimizer.h"
#include "moe/train/plan.h"
#include "moe/train/step.h"
#include "parallel/backend/mpi.h"
#include "tests/parallel/mpi_gtest.h"

namespace cmoe {
namespace {

parallel::MpiCommunicator* g_world = nullptr;

int64_t sum_over_ranks(int64_t v) {
  Tensor t = Tensor::zeros({1}, DType::kI64);
  t.data<int64_t>()[0] = v;
  CMOE_CHECK(g_world->all_reduce(t).ok(), "all_reduce");
  return t.data<int64_t>()[0];
}

RunConfig tiny(const parallel::ParallelLayout& l, bool zero1, const std::vector<std::string>& sets) {
  auto cfg = config_load(std::string(CMOE_SOURCE_DIR) + "/configs/tiny.textproto", sets);
  CMOE_CHECK(cfg.ok(), cfg.status().message());
  cfg->mutable_parallel()->set_pp(l.pp);
  cfg->mutable_parallel()->set_dp(l.dp);
  cfg->mutable_parallel()->set_ep(l.ep);
  cfg->mutable_parallel()->set_distributed_optimizer(zero1);
  CMOE_CHECK(config_validate(*cfg).ok(), config_validate(*cfg).message());
  return *cfg;
}

BatchFn batches(const RunConfig& cfg, uint64_t seed) {
  auto n = std::make_shared<int64_t>(0);
  const int64_t B = cfg.train().micro_batch_size(), T = cfg.model().seq_len(), V = cfg.model().vocab_size();
  return [=]() -> absl::StatusOr<Batch> {
    std::vector<int32_t> ids(B * T), tgt(B * T);
    for (int64_t i = 0; i < B * T; ++i) {
      ids[i] = static_cast<int32_t>(rng_u32(seed, 1, *n * 100000 + i) % V);
      tgt[i] = static_cast<int32_t>(rng_u32(seed, 2, *n * 100000 + i) % V);
    }
    ++*n;
    return Batch{Tensor::from_ints({B, T}, ids), Tensor::from_ints({B, T}, tgt)};
  };
}

// Counters of each group communicator, by the names the plan uses.
std::map<std::string, parallel::CommCounters> group_counters(const parallel::ProcessGroups& g) {
  return {{"world", g.world->counters()}, {"dp", g.dp->counters()}, {"pp", g.pp->counters()},
          {"ep", g.ep->counters()}, {"edp", g.edp->counters()}};
}

// Runs two steps of cfg on this rank and counts disagreements with its plan.
int64_t check_layout(const RunConfig& cfg, const std::string& what) {
  const parallel::ParallelLayout layout{cfg.parallel().pp(), cfg.parallel().dp(), cfg.parallel().ep()};
  auto world = g_world->split(0, g_world->rank(), "world");
  CMOE_CHECK(world.ok(), world.status().message());
  auto groups = parallel::make_process_groups(std::move(*world), layout);
  CMOE_CHECK(groups.ok(), groups.status().message());
  const int rank = groups->world->rank();
  auto plan = plan_rank(cfg, rank);
  CMOE_CHECK(plan.ok(), plan.status().message());
  int64_t bad = 0;
  auto expect_eq = [&](int64_t got, int64_t want, const std::string& name) {
    if (got == want) return;
    ++bad;
    std::fprintf(stderr, "[rank %d] %s: %s = %lld, plan %lld\n", rank, what.c_str(), name.c_str(),
                 static_cast<long long>(got), static_cast<long long>(want));
  };

  Allocator& alloc = allocator_for(DeviceType::kCPU);
  const int64_t base = static_cast<int64_t>(alloc.bytes_in_use());
  Model model(cfg.model(), cfg.train().seed(),
              pipeline_shard(cfg.model().n_layers(), layout.pp, groups->place.pp_rank, layout.ep, groups->place.ep_rank));
  model.set_parallel({groups->dp.get(), groups->ep.get()});
  AdamW opt(&model.params(), {});
  TrainStep step(cfg, model, opt, &*groups, batches(cfg, 100 + groups->place.dp_rank));

  int64_t params = 0, moments = 0;
  for (const Param& p : model.params()) params += static_cast<int64_t>(p.var.value().nbytes());
  for (size_t i = 0; i < model.params().size(); ++i) {
    for (const Tensor* m : {&opt.exp_avg()[i], &opt.exp_avg_sq()[i]})
      if (m->defined()) moments += static_cast<int64_t>(m->nbytes());
  }
  expect_eq(params, plan->mem.params, "parameter bytes");
  expect_eq(moments, plan->mem.optimizer, "AdamW moment bytes");
  int64_t biases = 0;
  for (const Param& b : model.router_biases()) biases += static_cast<int64_t>(b.var.value().nbytes());
  expect_eq(biases, plan->mem.buffers, "router bias bytes");

  for (int s = 0; s < 2; ++s) {
    const auto before = group_counters(*groups);
    alloc.reset_peak();
    auto r = step.run(s);
    CMOE_CHECK(r.ok(), r.status().message());
    const double peak = static_cast<double>(alloc.peak_bytes()) - static_cast<double>(base);
    expect_eq(step.last_grad_bytes(), plan->mem.grads, "gradient bytes at the end of backward");
    const double err = double(plan->mem.peak) / peak - 1;
    std::printf("[rank %d] %s, step %d: peak %.0f bytes, plan %+.1f%%\n", rank, what.c_str(), s + 1, peak, 100 * err);
    if (std::fabs(err) > 0.15) {
      ++bad;
      std::fprintf(stderr, "[rank %d] %s: step peak %.0f bytes, plan %lld\n", rank, what.c_str(), peak,
                   static_cast<long long>(plan->mem.peak));
    }
    // The step's record: this rank's traffic per kind.
    const parallel::CommCounters want = plan->counters(), lo = plan->counters_min(), hi = plan->counters_max();
    for (int k = 0; k < parallel::kNumCommKinds; ++k) {
      const std::string kind = parallel::comm_kind_name(static_cast<parallel::CommKind>(k));
      expect_eq(r->record.comm.calls[k], want.calls[k], kind + " calls");
      if (lo.bytes[k] == hi.bytes[k]) {
        expect_eq(r->record.comm.bytes[k], want.bytes[k], kind + " bytes");
      } else if (r->record.comm.bytes[k] < lo.bytes[k] || r->record.comm.bytes[k] > hi.bytes[k]) {
        ++bad;
        std::fprintf(stderr, "[rank %d] %s: %s bytes %lld outside the plan's [%lld, %lld]\n", rank, what.c_str(),
                     kind.c_str(), static_cast<long long>(r->record.comm.bytes[k]), static_cast<long long>(lo.bytes[k]),
                     static_cast<long long>(hi.bytes[k]));
      }
    }
    // Per group.
    const auto after = group_counters(*groups);
    for (const auto& [group, c1] : after) {
      parallel::CommCounters got = c1;
      got -= before.at(group);
      parallel::CommCounters g_want, g_lo, g_hi;
      for (const PlanComm& c : plan->comm) {
        if (c.group != group) continue;
        const auto k = static_cast<size_t>(c.kind);
        g_want.calls[k] += c.calls;
        g_want.bytes[k] += c.bytes;
        g_lo.bytes[k] += c.bytes_min;
        g_hi.bytes[k] += c.bytes_max;
      }
      for (int k = 0; k < parallel::kNumCommKinds; ++k) {
        const std::string name = absl::StrCat(group, " ", parallel::comm_kind_name(static_cast<parallel::CommKind>(k)));
        expect_eq(got.calls[k], g_want.calls[k], name + " calls");
        if (g_lo.bytes[k] == g_hi.bytes[k]) expect_eq(got.bytes[k], g_want.bytes[k], name + " bytes");
        else bad += got.bytes[k] < g_lo.bytes[k] || got.bytes[k] > g_hi.bytes[k];
      }
    }
  }
  return bad;
}

std::vector<parallel::ParallelLayout> layouts_for(int world) {
  if (world == 2) return {{1, 2, 1}, {1, 2, 2}, {2, 1, 1}};
  if (world == 4) return {{1, 4, 2}, {1, 4, 4}, {2, 2, 1}, {2, 2, 2}};
  return {{1, world, 1}};
}

void run_cases(const std::vector<std::string>& sets, const char* name) {
  int64_t bad = 0;
  for (const parallel::ParallelLayout& l : layouts_for(g_world->size())) {
    for (const bool zero1 : {false, true}) {
      if (zero1 && l.dp == 1) continue;
      const std::string what = absl::StrCat(name, " (", l.pp, ",", l.dp, ",", l.ep, ")", zero1 ? " ZeRO-1" : "");
      bad += check_layout(tiny(l, zero1, sets), what);
    }
  }
  EXPECT_EQ(sum_over_ranks(bad), 0) << name << ": mismatches summed over ranks (see stderr)";
}

// Every token on every expert: the expert-parallel rows are fixed, so every byte is exact.
TEST(PlanRanks, EveryByteAndCallWhenRoutingLeavesNoChoice) {
  run_cases({"model.moe.top_k=4", "train.grad_accum=2"}, "top_k = E");
}

// Learned top-2 routing: exact except the routed rows, which stay within the plan's bounds.
TEST(PlanRanks, LearnedRoutingWithinTheBounds) { run_cases({"train.grad_accum=3"}, "cartesian top-2"); }

TEST(PlanRanks, HashRoutingDenseLayersAndBiases) {
  run_cases({"model.moe.kind=hash", "train.micro_batch_size=2"}, "hash");
  run_cases({"model.moe.kind=smoe", "model.moe.aux_free_bias=true", "model.moe.top_k=4"}, "smoe aux-free top_k = E");
}

}  // namespace
}  // namespace cmoe

int main(int argc, char** argv) {
  auto world = cmoe::testing::mpi_test_world(&argc, &argv);
  cmoe::g_world = world.get();
  const int rc = cmoe::testing::run_all_tests_on_every_rank(*world);
  world.reset();
  return rc;
}
