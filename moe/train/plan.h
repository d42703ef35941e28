// plan.h — the layout planner behind `cmoe plan`: for a run config and a cluster, the memory,
// communication, FLOPs and step time of every (pp, dp, ep) layout cmoe can run, ranked.
//
// cmoe's layouts: world = pp * dp ranks; ep divides dp (expert-parallel groups are carved out of
// each data-parallel group, as Megatron-LM's expert-model-parallel size is), so for N devices
// the layouts are every pp * dp = N with ep | dp, ep | experts per set, pp <= n_layers.
//
// What is predicted comes from the same code the run executes: the parameter list of each
// rank's shard (param_specs), the gradient reducer's bucket plan and ZeRO-1 owners
// (parallel::grad_bucket_plan), the 1F1B schedule (parallel::pipeline_schedule), and the
// sequence of collectives of a step (model.cpp, expert_parallel.cpp, router.cpp, step.cpp),
// counted here in the order they happen. Per rank and step, parameter, gradient and optimizer
// bytes, and the calls and bytes of every collective, equal what a run allocates and what the
// communicators count (parallel::CommCounters) exactly, except the token rows of expert
// parallelism, which depend on routing: those are given as the expected value under uniform
// routing, with the smallest and largest possible. Activation memory is a model of the tensors
// autograd keeps, op by op. Time is a model (docs/planner.md gives every formula).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "moe/train/config.h"
#include "moe/train/hardware.h"
#include "parallel/communicator.h"
#include "parallel/process_groups.h"

namespace cmoe {

// One kind of operation on one group in one step of one rank.
struct PlanComm {
  std::string group;  // "dp", "edp", "ep", "pp", "world"
  parallel::CommKind kind = parallel::CommKind::kAllReduce;
  std::string what;   // "gradient buckets", "router statistics", "token rows", ...
  int group_size = 1;
  int64_t calls = 0;
  // Bytes as parallel::CommCounters counts them: expected, and the range over routings (all
  // three equal unless the bytes depend on routing).
  int64_t bytes = 0, bytes_min = 0, bytes_max = 0;
  bool in_micro_batch = false;  // inside forward/backward (on the pipeline's critical path)
  bool backward = false;        // in_micro_batch: during backward
};

// One rank's memory in bytes (f32 unless said).
struct PlanMemory {
  int64_t params = 0;     // the shard's parameters; f32 (they are also the master weights)
  int64_t grads = 0;      // one f32 gradient per parameter, from the first backward on
  int64_t optimizer = 0;  // AdamW's two moments, f32; ZeRO-1: the parameters this rank owns
  int64_t master = 0;     // separate master weights: none (cmoe keeps f32 parameters; bf16
                          // training rounds them per matmul, inside the activations below)
  int64_t buffers = 0;    // router selection biases (aux-loss-free balancing)
  int64_t grad_buckets = 0;  // the reducer's bucket buffers (ZeRO-1: + this rank's chunk), at the
                             // end of backward, and ZeRO-1's all-gather buffers after the update
  int64_t p2p_buffers = 0;   // pipeline receive buffers of the micro-batches in flight
  int64_t activations_per_micro = 0;        // kept for backward, one micro-batch, expected routing
  int64_t activations_per_micro_worst = 0;  // ... when one rank's experts get every token
  int64_t dispatch_per_micro = 0;           // its expert-dispatch part (expected routing)
  int64_t dispatch_per_micro_worst = 0;
  int64_t in_flight = 1;    // micro-batches whose forward is done and backward is not (1F1B)
  int64_t activations = 0;  // activations_per_micro * in_flight
  int64_t transient = 0;    // the largest temporary of one op (loss chunk, attention, dispatch)
  int64_t peak = 0;         // estimated high-water mark of the step (docs/planner.md)
  int64_t peak_worst = 0;
  int64_t static_bytes() const { return params + optimizer + master + buffers; }
};

// One rank's step: what it stores, what it computes, what it sends.
struct RankPlan {
  int rank = 0, stage = 0, dp_rank = 0, ep_rank = 0;
  int layer_begin = 0, layer_end = 0;
  int64_t param_count = 0;        // elements of the shard's parameters
  int64_t optimizer_elems = 0;    // elements whose AdamW moments this rank keeps
  int64_t stage_max_optimizer_elems = 0;  // ... the most any dp rank of the stage keeps (ZeRO-1)
  PlanMemory mem;
  std::vector<PlanComm> comm;
  // Per micro-batch on this stage: model FLOPs forward and backward (6 * params + attention,
  // split 1:2, as Model::flops_per_token), and the forward FLOPs recomputation adds.
  double fwd_flops = 0, bwd_flops = 0, recompute_flops = 0;
  double expert_fwd_flops = 0;  // the routed experts' part of fwd_flops (expected routing)
  int64_t optimizer_update_elems = 0;  // elements AdamW updates (ZeRO-1: owned)

  // Expected bytes and calls summed per kind (what the rank's communicators count in a step).
  parallel::CommCounters counters() const;
  parallel::CommCounters counters_min() const;
  parallel::CommCounters counters_max() const;
};

// The plan of one rank under cfg's layout (cfg.parallel) and training settings (micro-batch
// size, grad_accum, precision, recompute, distributed optimizer). world = pp * dp.
absl::StatusOr<RankPlan> plan_rank(const config::RunConfig& cfg, int rank);

// Where the step's time goes on the critical path (seconds).
struct StepTime {
  double compute = 0;     // forward + backward (+ recomputation) of the slowest stage's micro-batches
  double imbalance = 0;   // ep > 1: the routed-expert work the busiest rank of an expert-parallel
                          // group does beyond its share (LayoutPlan::expert_imbalance - 1 of it)
  double bubble = 0;      // pipeline fill and drain
  double ep_comm = 0;     // expert-parallel all-to-alls and router statistics inside micro-batches
  double pp_comm = 0;     // pipeline sends and receives
  double dp_comm = 0;     // gradient reduction not hidden behind backward, ZeRO-1 all-gather
  double optimizer = 0;   // gradient norm, AdamW, bucket copies (memory bound)
  double other = 0;       // the step's world all-reduce
  double total = 0;
};

struct LayoutPlan {
  parallel::ParallelLayout layout;
  bool zero1 = false;
  int64_t micro_batch = 0, grad_accum = 0;
  int64_t global_batch = 0;     // sequences per step: micro_batch * dp * grad_accum
  int64_t tokens_per_step = 0;
  int gpus_per_node = 1;
  std::vector<RankPlan> stages;  // dp rank 0 of each stage (ZeRO-1 memory: the rank that keeps most)
  int64_t peak_bytes = 0, peak_bytes_worst = 0;  // the largest rank's
  double capacity_bytes = 0;     // usable memory per rank
  bool fits = false;             // peak_bytes <= capacity_bytes
  double flops_per_step = 0;     // model FLOPs of all ranks
  double expert_imbalance = 1;  // ep > 1: routed pairs of the busiest rank of an ep group over the
                                // mean, summed over the MoE sub-layers (1: balanced routing)
  StepTime time;  // the parts add up to time.total
  double tokens_per_s = 0, mfu = 0;
};

// What calibrate_cpu_mfu measures (below).
struct CpuCalibration {
  double mfu = 0;            // the model without the LM head's cross-entropy
  double head_mfu = 0;       // the LM head's cross-entropy alone (forward, backward, recompute)
  double optimizer_gbs = 0;  // AdamW's 28 bytes per parameter over its measured time
  double seconds = 0;        // one forward and backward of the whole model
  double sharing = 1;        // ranks > cores: the node's throughput with all ranks computing
                             // against ranks / cores times one alone (mfu and head_mfu include it)
  // Routing of the config's initial model on its first training micro-batches (random tokens
  // when the data cannot be read; routing_source says which): for each ep that divides the
  // experts per set (2 .. ranks), the routed pairs of the busiest of ep equal slices of the
  // experts over the mean, summed over the MoE sub-layers, on ep micro-batches at a time
  // (the tokens one expert-parallel group routes together), averaged over the groups read.
  std::map<int, double> ep_imbalance;
  std::string routing_source;
  std::string why;           // set when not measured
};

struct PlanOptions {
  int gpus = 1;
  int gpus_per_node = 0;                 // 0: the hardware's devices_per_node (CPU: gpus)
  std::vector<int64_t> micro_batches;    // empty: the config's train.micro_batch_size
  std::vector<int64_t> grad_accums;      // empty: the config's train.grad_accum
  int64_t global_batch = 0;              // > 0: sequences per step, grad_accum = it / (mb * dp)
  std::vector<bool> zero1 = {false, true};
  double mfu = 0;                        // > 0: overrides the hardware's
  int only_pp = 0, only_dp = 0, only_ep = 0;  // > 0: only layouts with this value
  // CPU node: efficiencies measured per micro-batch size (calibrate_cpu_mfu); a layout of a
  // micro-batch found here plans with them instead of the hardware's mfu, head_mfu and
  // optimizer_gbs. Ignored when mfu > 0.
  std::map<int64_t, CpuCalibration> calibration;
  // > 0: the expert imbalance (LayoutPlan::expert_imbalance) every ep > 1 layout plans with,
  // instead of the calibration's (or 1, balanced, without one).
  double expert_imbalance = 0;
};

// The plan of cfg's own layout and settings on hw, ranks filling nodes of gpus_per_node in
// rank order. mfu > 0 overrides the hardware's. expert_imbalance (>= 1, used when ep > 1): the
// busiest expert-parallel rank's routed pairs over the mean; its extra expert work is on the
// critical path (the group's all-to-alls wait for it).
absl::StatusOr<LayoutPlan> plan_layout(const config::RunConfig& cfg, const Hardware& hw, int gpus_per_node,
                                       double mfu = 0, double expert_imbalance = 1);

// A CPU node's efficiencies for a config, measured instead of assumed: the config's forward and
// backward (the whole model in this process, one micro-batch of the config's size, on
// `threads` threads as each rank of the planned layouts will run; best of three after a
// warm-up) and the LM head's fused cross-entropy alone on the same rows, timed against the
// node's matmul peak scaled to threads / cores, FLOPs counted as the plan counts them
// (recomputation included): head_mfu is the head's, mfu the rest's. One AdamW update of the
// model on `threads` threads gives optimizer_gbs, scaled to the node as the plan shares it. With
// more ranks than cores, `ranks` copies of the forward and backward run at once (one thread
// each) and the efficiencies are scaled by the throughput the sharing keeps (`sharing`).
// The same forward passes, on the config's first training micro-batches, give ep_imbalance.
// A config too large to time here (over ~20 s or half the memory per micro-batch) is declined:
// `why` says so and the caller keeps the hardware's figures.
CpuCalibration calibrate_cpu_mfu(const config::RunConfig& cfg, const Hardware& hw, int threads, int ranks = 1);

// Every layout cmoe can run on opt.gpus devices, with each micro-batch, grad_accum and ZeRO-1
// option: those that fit ranked by tokens/s (fastest first), then those that do not, by peak
// memory. InvalidArgument when no layout exists (e.g. gpus = 0, or a global batch that no
// layout divides).
absl::StatusOr<std::vector<LayoutPlan>> plan_layouts(const config::RunConfig& cfg, const Hardware& hw,
                                                     const PlanOptions& opt);

// The bytes that cross between ranks for `bytes` as CommCounters counts them, on a group of n
// ranks, with ring algorithms and uniform all-to-all traffic (docs/planner.md):
// all_reduce 2(n-1)/n, reduce_scatter (n-1)/n, all_gather (n-1), all_to_all(_v) (n-1)/n,
// send_recv and broadcast 1.
double plan_wire_bytes(parallel::CommKind kind, int n, double bytes);

// Expected number of distinct ep ranks a token's k distinct experts (uniform over E, E / ep per
// rank) land on: ep * (1 - prod_{i<k} (E - E/ep - i) / (E - i)).
double plan_expected_ranks_per_token(int64_t num_experts, int ep, int64_t k);

}  // namespace cmoe
