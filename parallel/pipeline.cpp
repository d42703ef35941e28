// pipeline.cpp — the 1F1B schedule and its executor (see pipeline.h).
#include "parallel/pipeline.h"

#include <algorithm>
#include <map>

#include "absl/strings/str_cat.h"

namespace cmoe::parallel {

namespace {

PipelineSchedule empty_schedule(int stages, int stage, int64_t micro_batches) {
  CMOE_CHECK(stages >= 1 && stage >= 0 && stage < stages && micro_batches >= 1, "pipeline_schedule: stage ", stage,
             " of ", stages, ", ", micro_batches, " micro-batches");
  PipelineSchedule s;
  s.stages = stages;
  s.stage = stage;
  s.micro_batches = micro_batches;
  return s;
}

}  // namespace

PipelineSchedule pipeline_schedule(int stages, int stage, int64_t micro_batches) {
  PipelineSchedule s = empty_schedule(stages, stage, micro_batches);
  s.warmup = std::min<int64_t>(stages - stage - 1, micro_batches);
  const int64_t steady = micro_batches - s.warmup;
  const bool first = stage == 0, last = stage == stages - 1;
  const int prev = stage - 1, next = stage + 1;
  using T = PipeTransfer;
  auto comm = [&](std::vector<PipeTransfer> t) { s.actions.push_back({PipeAction::kComm, 0, std::move(t)}); };
  int64_t fwd = 0, bwd = 0;
  for (int64_t i = 0; i < s.warmup; ++i, ++fwd) {  // warm-up: never the last stage
    if (!first) comm({{T::kRecvActivation, fwd, prev}});
    s.actions.push_back({PipeAction::kForward, fwd, {}});
    comm({{T::kSendActivation, fwd, next}});
  }
  if (steady > 0 && !first) comm({{T::kRecvActivation, fwd, prev}});
  for (int64_t i = 0; i < steady; ++i, ++fwd, ++bwd) {
    s.actions.push_back({PipeAction::kForward, fwd, {}});
    if (!last) comm({{T::kSendActivation, fwd, next}, {T::kRecvGradient, bwd, next}});
    s.actions.push_back({PipeAction::kBackward, bwd, {}});
    if (first) continue;
    std::vector<PipeTransfer> t = {{T::kSendGradient, bwd, prev}};
    if (i + 1 < steady) t.push_back({T::kRecvActivation, fwd + 1, prev});
    comm(std::move(t));
  }
  for (int64_t i = 0; i < s.warmup; ++i, ++bwd) {  // cool-down
    comm({{T::kRecvGradient, bwd, next}});
    s.actions.push_back({PipeAction::kBackward, bwd, {}});
    if (!first) comm({{T::kSendGradient, bwd, prev}});
  }
  return s;
}

PipelineSchedule pipeline_schedule_forward_only(int stages, int stage, int64_t micro_batches) {
  PipelineSchedule s = empty_schedule(stages, stage, micro_batches);
  for (int64_t m = 0; m < micro_batches; ++m) {
    if (stage > 0) s.actions.push_back({PipeAction::kComm, 0, {{PipeTransfer::kRecvActivation, m, stage - 1}}});
    s.actions.push_back({PipeAction::kForward, m, {}});
    if (stage + 1 < stages) s.actions.push_back({PipeAction::kComm, 0, {{PipeTransfer::kSendActivation, m, stage + 1}}});
  }
  return s;
}

std::string pipeline_schedule_str(const PipelineSchedule& s) {
  std::string out;
  for (const PipeAction& a : s.actions) {
    if (!out.empty()) out += ' ';
    if (a.kind == PipeAction::kForward) absl::StrAppend(&out, "F", a.micro);
    if (a.kind == PipeAction::kBackward) absl::StrAppend(&out, "B", a.micro);
    if (a.kind != PipeAction::kComm) continue;
    out += "C[";
    for (size_t i = 0; i < a.transfers.size(); ++i) {
      const PipeTransfer& t = a.transfers[i];
      const bool send = t.kind == PipeTransfer::kSendActivation || t.kind == PipeTransfer::kSendGradient;
      const bool act = t.kind == PipeTransfer::kSendActivation || t.kind == PipeTransfer::kRecvActivation;
      absl::StrAppend(&out, i ? " " : "", send ? "s" : "r", act ? "A" : "G", t.micro, send ? ">" : "<", t.peer);
    }
    out += "]";
  }
  return out;
}

absl::Status pipeline_run(const PipelineSchedule& schedule, Communicator* pp, const PipelineStageFns& fns) {
  // Tensors by micro-batch: received inputs and output gradients, and what is to be sent.
  std::map<int64_t, Tensor> input, output, grad_output, grad_input;
  auto take = [](std::map<int64_t, Tensor>& m, int64_t micro) {
    auto it = m.find(micro);
    if (it == m.end()) return Tensor();
    Tensor t = std::move(it->second);
    m.erase(it);
    return t;
  };
  for (const PipeAction& a : schedule.actions) {
    switch (a.kind) {
      case PipeAction::kForward: {
        CMOE_ASSIGN_OR_RETURN(Tensor out, fns.forward(a.micro, take(input, a.micro)));
        if (schedule.stage + 1 < schedule.stages) output[a.micro] = std::move(out);
        break;
      }
      case PipeAction::kBackward: {
        CMOE_ASSIGN_OR_RETURN(Tensor g, fns.backward(a.micro, take(grad_output, a.micro)));
        if (schedule.stage > 0) grad_input[a.micro] = std::move(g);
        break;
      }
      case PipeAction::kComm: {
        CMOE_CHECK(pp != nullptr, "pipeline_run: a transfer without a pipeline communicator");
        std::vector<P2POp> ops;
        for (const PipeTransfer& t : a.transfers) {
          switch (t.kind) {
            case PipeTransfer::kSendActivation:
              ops.push_back({P2POp::kSend, take(output, t.micro), t.peer, kTagActivation});
              break;
            case PipeTransfer::kSendGradient:
              ops.push_back({P2POp::kSend, take(grad_input, t.micro), t.peer, kTagGradient});
              break;
            case PipeTransfer::kRecvActivation:
              ops.push_back({P2POp::kRecv, input[t.micro] = fns.buffer(), t.peer, kTagActivation});
              break;
            case PipeTransfer::kRecvGradient:
              ops.push_back({P2POp::kRecv, grad_output[t.micro] = fns.buffer(), t.peer, kTagGradient});
              break;
          }
          CMOE_CHECK(ops.back().tensor.defined(), "pipeline_run: nothing to send for micro-batch ", t.micro);
        }
        CMOE_RETURN_IF_ERROR(pp->batch_p2p(ops));
        break;
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace cmoe::parallel
