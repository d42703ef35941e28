// pipeline_test.cpp — the 1F1B schedule with fake stages: P stages run their action lists in
// one process, a comm batch completing only when every transfer in it meets its counterpart
// in the peer's current batch (blocking rendezvous, the worst case of MPI and NCCL). Checks:
// no deadlock, every micro-batch forward then backward once on every stage, data dependencies
// across stages, backward in forward order, warm-up/cool-down counts and the in-flight bound.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>

#include "parallel/pipeline.h"

namespace cmoe::parallel {
namespace {

using T = PipeTransfer;

bool counterpart(const PipeTransfer& a, int from, const PipeTransfer& b, int at) {
  if (a.peer != at || b.peer != from || a.micro != b.micro) return false;
  switch (a.kind) {
    case T::kSendActivation: return b.kind == T::kRecvActivation;
    case T::kRecvActivation: return b.kind == T::kSendActivation;
    case T::kSendGradient: return b.kind == T::kRecvGradient;
    case T::kRecvGradient: return b.kind == T::kSendGradient;
  }
  return false;
}

struct Event {
  int stage;
  PipeAction::Kind kind;
  int64_t micro;
};

// Runs the stages to completion; returns the global order of compute events, or fails.
std::vector<Event> simulate(int P, int64_t M, bool forward_only = false) {
  std::vector<PipelineSchedule> s;
  for (int st = 0; st < P; ++st)
    s.push_back(forward_only ? pipeline_schedule_forward_only(P, st, M) : pipeline_schedule(P, st, M));
  std::vector<size_t> pc(P, 0);
  std::vector<Event> events;
  for (;;) {
    bool progressed = false, all_done = true;
    std::vector<bool> can(P, false);
    for (int st = 0; st < P; ++st) {
      if (pc[st] >= s[st].actions.size()) continue;
      all_done = false;
      const PipeAction& a = s[st].actions[pc[st]];
      if (a.kind != PipeAction::kComm) {
        can[st] = true;
        continue;
      }
      bool ok = true;
      for (const PipeTransfer& t : a.transfers) {
        EXPECT_TRUE(t.peer == st - 1 || t.peer == st + 1) << "stage " << st << " talks to " << t.peer;
        if (t.peer < 0 || t.peer >= P || pc[t.peer] >= s[t.peer].actions.size()) {
          ok = false;
          break;
        }
        const PipeAction& b = s[t.peer].actions[pc[t.peer]];
        bool found = false;
        if (b.kind == PipeAction::kComm)
          for (const PipeTransfer& u : b.transfers) found |= counterpart(t, st, u, t.peer);
        ok &= found;
      }
      can[st] = ok;
    }
    if (all_done) break;
    for (int st = 0; st < P; ++st) {
      if (!can[st]) continue;
      const PipeAction& a = s[st].actions[pc[st]];
      if (a.kind != PipeAction::kComm) events.push_back({st, a.kind, a.micro});
      ++pc[st];
      progressed = true;
    }
    if (!progressed) {
      std::string where;
      for (int st = 0; st < P; ++st) where += " stage " + std::to_string(st) + ": " + pipeline_schedule_str(s[st]);
      ADD_FAILURE() << "deadlock with P=" << P << " M=" << M << ";" << where;
      break;
    }
  }
  return events;
}

TEST(Pipeline, OneStageAlternatesForwardAndBackwardWithoutTransfers) {
  EXPECT_EQ(pipeline_schedule_str(pipeline_schedule(1, 0, 3)), "F0 B0 F1 B1 F2 B2");
}

TEST(Pipeline, TwoStagesPostCrossingTransfersTogether) {
  EXPECT_EQ(pipeline_schedule_str(pipeline_schedule(2, 0, 2)), "F0 C[sA0>1] F1 C[sA1>1 rG0<1] B0 C[rG1<1] B1");
  EXPECT_EQ(pipeline_schedule_str(pipeline_schedule(2, 1, 2)), "C[rA0<0] F0 B0 C[sG0>0 rA1<0] F1 B1 C[sG1>0]");
}

TEST(Pipeline, EveryShapeRunsWithoutDeadlockAndKeeps1F1BInvariants) {
  for (int P = 1; P <= 5; ++P) {
    for (int64_t M = 1; M <= 7; ++M) {
      SCOPED_TRACE("P=" + std::to_string(P) + " M=" + std::to_string(M));
      const std::vector<Event> ev = simulate(P, M);
      ASSERT_EQ(ev.size(), static_cast<size_t>(2 * P * M));
      std::map<std::pair<int, int64_t>, size_t> fwd_at, bwd_at;  // (stage, micro) -> event index
      for (size_t i = 0; i < ev.size(); ++i) {
        auto& at = ev[i].kind == PipeAction::kForward ? fwd_at : bwd_at;
        EXPECT_TRUE(at.emplace(std::make_pair(ev[i].stage, ev[i].micro), i).second) << "twice";
      }
      for (int st = 0; st < P; ++st) {
        const PipelineSchedule sch = pipeline_schedule(P, st, M);
        EXPECT_EQ(sch.warmup, std::min<int64_t>(P - st - 1, M));
        int64_t in_flight = 0, max_in_flight = 0, leading_forwards = 0, trailing_backwards = 0;
        bool seen_backward = false;
        int64_t next_b = 0;
        for (const PipeAction& a : sch.actions) {
          if (a.kind == PipeAction::kForward) {
            ++in_flight;
            if (!seen_backward) ++leading_forwards;
            trailing_backwards = 0;
          } else if (a.kind == PipeAction::kBackward) {
            EXPECT_EQ(a.micro, next_b++) << "backward out of forward order on stage " << st;
            --in_flight;
            seen_backward = true;
            ++trailing_backwards;
          }
          EXPECT_GE(in_flight, 0);
          max_in_flight = std::max(max_in_flight, in_flight);
        }
        EXPECT_EQ(max_in_flight, std::min<int64_t>(P - st, M)) << "stage " << st;
        EXPECT_EQ(leading_forwards, std::min<int64_t>(sch.warmup + 1, M)) << "warm-up forwards + the first steady one";
        EXPECT_EQ(trailing_backwards, std::min<int64_t>(sch.warmup + 1, M)) << "cool-down backwards + the last steady one";
        for (int64_t m = 0; m < M; ++m) {
          auto F = [&](int a) { return fwd_at[std::make_pair(a, m)]; };
          auto B = [&](int a) { return bwd_at[std::make_pair(a, m)]; };
          EXPECT_LT(F(st), B(st));
          if (st > 0) {
            EXPECT_LT(F(st - 1), F(st)) << "forward before its input arrived";
          }
          if (st + 1 < P) {
            EXPECT_LT(B(st + 1), B(st)) << "backward before its gradient arrived";
          }
        }
      }
    }
  }
}

TEST(Pipeline, ForwardOnlyFlowsDownTheStages) {
  for (int P = 1; P <= 4; ++P) {
    const std::vector<Event> ev = simulate(P, 3, true);
    ASSERT_EQ(ev.size(), static_cast<size_t>(3 * P));
    for (const Event& e : ev) EXPECT_EQ(e.kind, PipeAction::kForward);
  }
  EXPECT_EQ(pipeline_schedule_str(pipeline_schedule_forward_only(3, 1, 2)), "C[rA0<0] F0 C[sA0>2] C[rA1<0] F1 C[sA1>2]");
}

}  // namespace
}  // namespace cmoe::parallel
