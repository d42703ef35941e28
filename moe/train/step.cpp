// step.cpp — one optimizer step (see step.h).
#include "moe/train/step.h"

#include <chrono>
#include <cmath>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/cuda/context.h"
#include "core/cuda/multi_tensor.h"
#include "core/ops/elementwise.h"
#include "core/profiler.h"
#include "parallel/pipeline.h"

namespace cmoe {

namespace {

// Sum over the world of a few f32 values (the step's loss shares, norm and stop flag).
absl::Status world_sum(parallel::ProcessGroups* g, std::vector<float>& v) {
  if (g == nullptr || g->world->size() == 1) return absl::OkStatus();
  Tensor t = Tensor::from_floats({static_cast<int64_t>(v.size())}, v);
  CMOE_RETURN_IF_ERROR(g->world->all_reduce(t));
  for (size_t i = 0; i < v.size(); ++i) v[i] = t.data<float>()[i];
  return absl::OkStatus();
}

}  // namespace

TrainStep::TrainStep(const config::RunConfig& cfg, Model& model, AdamW& opt, parallel::ProcessGroups* groups,
                     BatchFn next, std::function<bool()> stop_requested)
    : cfg_(cfg), model_(model), opt_(opt), groups_(groups != nullptr && groups->world->size() > 1 ? groups : nullptr),
      next_(std::move(next)), stop_requested_(std::move(stop_requested)),
      routing_(cfg.train().routing_stats_interval() > 0 ? cfg.train().routing_stats_interval()
                                                         : cfg.train().log_interval()) {
  fopt_.compute_dtype = compute_dtype(cfg.train());
  fopt_.recompute_attention = cfg.train().recompute();
  if (groups_ != nullptr) {
    dp_ = groups_->layout.dp;
    ep_ = groups_->layout.ep;
  }
  zero1_ = dp_ > 1 && cfg.parallel().distributed_optimizer();
  if (dp_ > 1) {
    reducer_ = std::make_unique<parallel::GradReducer>(&model.params(), groups_->dp.get(), groups_->edp.get(), dp_,
                                                       parallel::GradReducer::kBucketElems, zero1_);
    model.set_grad_ready(reducer_->hook());
    if (zero1_) opt.shard(reducer_->owned());
  }
}

std::string TrainStep::describe() const {
  if (!reducer_) return "";
  return absl::StrFormat("data parallel: %d gradient buckets, %d launched during backward%s", reducer_->num_buckets(),
                         reducer_->launched_during_backward(),
                         zero1_ ? "; distributed optimizer (ZeRO-1): reduce-scatter, owner update, all-gather" : "");
}

absl::Status TrainStep::micro_batches(double& loss_sum, double& aux_sum, int64_t& tokens,
                                      std::vector<RouterReport>& reports, std::vector<CoUsage>& co_usage) {
  const auto& t = cfg_.train();
  const int64_t M = t.grad_accum();
  const int stages = groups_ ? groups_->layout.pp : 1, stage = groups_ ? groups_->place.pp_rank : 0;
  const bool first = stage == 0, last = stage == stages - 1;
  // A micro-batch's stage input (a leaf that collects the gradient to send back) and result,
  // from its forward until its backward.
  struct InFlight {
    ag::Var input;
    ForwardResult f;
  };
  std::map<int64_t, InFlight> inflight;
  parallel::PipelineStageFns fns;
  fns.forward = [&](int64_t micro, const Tensor& input) -> absl::StatusOr<Tensor> {
    prof::Span span("forward", prof::Cat::kPhase, micro);
    Batch batch;
    {
      prof::Span wait("data wait", prof::Cat::kData);  // timed: the step's data_s
      CMOE_ASSIGN_OR_RETURN(batch, next_());
    }
    InFlight& it = inflight[micro];
    if (!first) it.input = ag::Var(input, true);
    ForwardOptions o = fopt_;
    o.final_micro_batch = micro == M - 1;
    o.loss_grad = 1.0f / static_cast<float>(M);  // the backward's seed, below
    it.f = model_.forward_stage(batch.ids, it.input, batch.targets, o);
    loss_sum += it.f.ce;
    aux_sum += it.f.aux;
    tokens += batch.ids.numel();
    reports.insert(reports.end(), it.f.routers.begin(), it.f.routers.end());
    merge_co_usage(co_usage, it.f.co_usage);
    return last ? Tensor() : it.f.hidden.value();
  };
  fns.backward = [&](int64_t micro, const Tensor& grad_output) -> absl::StatusOr<Tensor> {
    prof::Span span("backward", prof::Cat::kPhase, micro);
    InFlight it = std::move(inflight.at(micro));
    inflight.erase(micro);
    const Tensor seed = Tensor::full({}, 1.0f / static_cast<float>(M), model_.device());  // = o.loss_grad
    if (last) {
      ag::backward({it.f.loss}, {seed});
    } else {
      std::vector<ag::Var> roots = {it.f.hidden};
      std::vector<Tensor> grads = {grad_output};
      if (it.f.loss.defined()) roots.push_back(it.f.loss), grads.push_back(seed);
      ag::backward(roots, grads);
    }
    if (first) return Tensor();
    Tensor g = it.input.grad();
    return g.defined() ? g : Tensor::zeros(it.input.shape(), DType::kF32, model_.device());
  };
  fns.buffer = [&]() {
    return Tensor::empty({t.micro_batch_size() * cfg_.model().seq_len(), cfg_.model().d_model()}, DType::kF32,
                         model_.device());
  };
  return parallel::pipeline_run(parallel::pipeline_schedule(stages, stage, M), groups_ ? groups_->pp.get() : nullptr,
                                fns);
}

absl::StatusOr<TrainStep::Result> TrainStep::run(int64_t step) {
  const auto t0 = std::chrono::steady_clock::now();
  const Device dev = model_.device();
  if (!dev.is_cpu()) allocator_for(dev.type).reset_peak();
  const auto& t = cfg_.train();
  const int64_t M = t.grad_accum();
  const bool last_stage = groups_ == nullptr || groups_->place.pp_rank == groups_->layout.pp - 1;
  const parallel::CommCounters comm0 = groups_ ? parallel::process_groups_counters(*groups_) : parallel::CommCounters{};
  const double comm_wait0 = groups_ != nullptr ? groups_->comm_clock->seconds() : 0.0;
  const double data0 = prof::timed_seconds(prof::Cat::kData);
  double loss_sum = 0, aux_sum = 0;
  int64_t tokens = 0;
  std::vector<RouterReport> reports;
  std::vector<CoUsage> co_usage;
  CMOE_RETURN_IF_ERROR(micro_batches(loss_sum, aux_sum, tokens, reports, co_usage));
  grad_bytes_ = 0;
  for (const Param& p : model_.params())
    if (p.var.grad().defined()) grad_bytes_ += static_cast<int64_t>(p.var.grad().nbytes());
  if (reducer_) {
    prof::Span span("grad_reduce", prof::Cat::kPhase);
    CMOE_RETURN_IF_ERROR(reducer_->finish());
  }

  // Global gradient norm: a replicated parameter counted once over its dp copies, an expert
  // slice once over its dp / ep copies, summed over the stages. (ZeRO-1: only the owner has
  // the gradient, so each counts once as it is.)
  double sq = 0;
  {
    prof::Span span("grad_norm", prof::Cat::kOptimizer);
    auto copies = [this](const Param& p) {
      return zero1_ ? 1.0 : (p.expert ? static_cast<double>(dp_) / ep_ : static_cast<double>(dp_));
    };
    if (dev.is_cpu()) {
      for (const Param& p : model_.params()) {
        if (!p.var.grad().defined()) continue;
        sq += ops::sum_squares(p.var.grad()) / copies(p);
      }
    } else {
      // One multi-tensor kernel and one copy back for every gradient's squared sum.
      std::vector<Tensor> grads;
      std::vector<const Param*> with_grad;
      for (const Param& p : model_.params())
        if (p.var.grad().defined()) grads.push_back(p.var.grad()), with_grad.push_back(&p);
      const std::vector<double> sums = cuda::sum_squares_multi(grads);
      for (size_t i = 0; i < sums.size(); ++i) sq += sums[i] / copies(*with_grad[i]);
    }
  }
  Result res;
  res.stop = stop_requested_ && stop_requested_();
  if (groups_ != nullptr) {
    // Loss shares live on the last stage; each stage's aux is the same on its dp ranks.
    std::vector<float> v = {last_stage ? static_cast<float>(loss_sum) : 0.0f, static_cast<float>(aux_sum / dp_),
                            static_cast<float>(sq), res.stop ? 1.0f : 0.0f};
    CMOE_RETURN_IF_ERROR(world_sum(groups_, v));
    loss_sum = v[0];
    aux_sum = v[1];
    sq = v[2];
    res.stop = v[3] > 0;
    tokens *= dp_;
  }
  const double grad_norm = std::sqrt(sq);
  if (!std::isfinite(grad_norm)) {
    return absl::InternalError(absl::StrCat("step ", step + 1, ": gradient norm is ", grad_norm, " (loss ", loss_sum / M,
                                            "); stopping before the update"));
  }
  const float clip = t.grad_clip() > 0 && grad_norm > t.grad_clip() ? static_cast<float>(t.grad_clip() / grad_norm) : 1.0f;
  const float lr = lr_at(step, t);
  {
    prof::Span span("adamw", prof::Cat::kOptimizer);
    opt_.step(lr, clip);
  }
  if (zero1_) {
    prof::Span span("zero1_gather", prof::Cat::kPhase);
    CMOE_RETURN_IF_ERROR(reducer_->gather_params());
  }
  {
    prof::Span span("zero_grad, router stats", prof::Cat::kOptimizer);
    for (Param& p : model_.params()) p.var.zero_grad();
    reports = merge_reports(reports);
    if (cfg_.model().moe().aux_free_bias()) model_.update_router_biases(reports, cfg_.model().moe().aux_free_bias_rate());
  }

  StepRecord& r = res.record;
  // The step's traffic (docs/metrics.md). The reporting collectives below are not counted, so
  // `cmoe plan` predicts the same numbers.
  if (groups_ != nullptr) {
    r.comm = parallel::process_groups_counters(*groups_);
    r.comm -= comm0;
  }

  // Reporting only (no value above depends on it): the interval's routing statistics, and
  // every stage's reports on pp rank 0.
  {
    const parallel::UncountedScope reporting(groups_);
    const int64_t end = t.exit_at_step() > 0 ? t.exit_at_step() : t.steps();
    routing_.add(step + 1, reports, co_usage);
    if (routing_.due(step + 1, step + 1 == end || res.stop)) {
      CMOE_ASSIGN_OR_RETURN(r.routing, routing_.take(groups_ ? groups_->dp.get() : nullptr));
    }
    if (groups_ != nullptr) CMOE_RETURN_IF_ERROR(gather_stage_routing(groups_->pp.get(), reports, &r.routing));
  }

  r.step = step + 1;
  r.loss = loss_sum / M;
  r.aux = aux_sum / M;
  r.lr = lr;
  r.grad_norm = grad_norm;
  r.tokens = tokens;
  r.routers = std::move(reports);
  if (!dev.is_cpu()) cuda::synchronize(dev);  // the step's time includes its queued kernels
  r.data_s = prof::timed_seconds(prof::Cat::kData) - data0;
  r.comm_s = groups_ != nullptr ? groups_->comm_clock->seconds() - comm_wait0 : 0.0;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!dev.is_cpu()) r.peak_device_mb = static_cast<double>(allocator_for(dev.type).peak_bytes()) / (1 << 20);
  return res;
}

}  // namespace cmoe
