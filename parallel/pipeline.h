// pipeline.h — the 1F1B pipeline schedule (PipeDream-Flush, Megatron's non-interleaved
// schedule) as a list of actions, and the executor that runs one stage's list.
//
// Stage s of P with M micro-batches runs
//   warm-up:   w = min(P - s - 1, M) forwards (receive input, forward, send output),
//   steady:    M - w times one forward then one backward (1F1B),
//   cool-down: w backwards (receive output gradient, backward, send input gradient),
// so at most min(P - s, M) micro-batches are in flight (forward done, backward not) on stage s,
// and backwards run in forward order. Transfers that cross between neighbours are posted in
// one batch (Communicator::batch_p2p), so blocking rendezvous sends cannot deadlock: in the
// steady phase a stage sends its output and receives the oldest micro-batch's output gradient
// together, then sends that micro-batch's input gradient and receives the next input together.
// With P = 1 the list is M x (forward, backward) and nothing is sent.
//
// pipeline_schedule is a pure function, so the order is unit-tested without ranks
// (tests/parallel/pipeline_test.cpp simulates P stages exchanging messages).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "parallel/communicator.h"

namespace cmoe::parallel {

// One transfer of a comm action: this stage's side of it.
struct PipeTransfer {
  enum Kind { kSendActivation, kRecvActivation, kSendGradient, kRecvGradient };
  Kind kind;
  int64_t micro = 0;  // the micro-batch the tensor belongs to
  int peer = 0;       // the other stage (pp group rank = stage)
};

struct PipeAction {
  enum Kind { kForward, kBackward, kComm };
  Kind kind;
  int64_t micro = 0;                    // kForward, kBackward
  std::vector<PipeTransfer> transfers;  // kComm: posted together, completed together
};

struct PipelineSchedule {
  int stages = 1, stage = 0;
  int64_t micro_batches = 1;
  int64_t warmup = 0;  // forwards before the first backward (= cool-down backwards)
  std::vector<PipeAction> actions;
};

PipelineSchedule pipeline_schedule(int stages, int stage, int64_t micro_batches);
// Evaluation: per micro-batch, receive the input (but on the first stage), forward, send the
// output (but on the last stage); no backward.
PipelineSchedule pipeline_schedule_forward_only(int stages, int stage, int64_t micro_batches);

// "F0 B0 C[sA0>1 rG0<1] ..." — for messages and tests.
std::string pipeline_schedule_str(const PipelineSchedule& s);

// What the executor calls. forward(m, input): runs micro-batch m on this stage; input is the
// received activation (undefined on the first stage); returns the stage output to send
// (ignored on the last stage). backward(m, grad_output): grad_output is the received output
// gradient (undefined on the last stage); returns the gradient of the stage input (ignored on
// the first stage). buffer(): a fresh tensor of an activation's shape to receive into.
struct PipelineStageFns {
  std::function<absl::StatusOr<Tensor>(int64_t micro, const Tensor& input)> forward;
  std::function<absl::StatusOr<Tensor>(int64_t micro, const Tensor& grad_output)> backward;
  std::function<Tensor()> buffer;
};

// Runs this stage's actions; transfers go over pp (group rank = stage; may be null when the
// schedule has one stage). Tags: activations kTagActivation, gradients kTagGradient.
inline constexpr int kTagActivation = 11, kTagGradient = 12;
absl::Status pipeline_run(const PipelineSchedule& schedule, Communicator* pp, const PipelineStageFns& fns);

}  // namespace cmoe::parallel
