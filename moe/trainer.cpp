// trainer.cpp — the training loop and evaluation (see trainer.h).
#include "moe/trainer.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <deque>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/ops/matmul.h"
#include "core/ops/elementwise.h"
#include "moe/distributed.h"

namespace cmoe {

namespace {

struct LoadStats {
  double max_over_mean = 0, cv = 0, dropped_frac = 0;
};

LoadStats load_stats(const RouterReport& r) {
  LoadStats s;
  double mean = 0, sq = 0, mx = 0;
  for (int64_t c : r.counts) mean += static_cast<double>(c) / r.counts.size();
  for (int64_t c : r.counts) {
    sq += (c - mean) * (c - mean) / r.counts.size();
    mx = std::max(mx, static_cast<double>(c));
  }
  s.max_over_mean = mean > 0 ? mx / mean : 0;
  s.cv = mean > 0 ? std::sqrt(sq) / mean : 0;
  s.dropped_frac = r.pairs > 0 ? static_cast<double>(r.dropped) / r.pairs : 0;
  return s;
}

// Merges per-micro-batch reports of the same router.
std::vector<RouterReport> merge_reports(const std::vector<RouterReport>& all) {
  std::vector<RouterReport> out;
  for (const RouterReport& r : all) {
    RouterReport* m = nullptr;
    for (RouterReport& o : out)
      if (o.name == r.name) m = &o;
    if (m == nullptr) {
      out.push_back(r);
      continue;
    }
    for (size_t e = 0; e < r.counts.size(); ++e) m->counts[e] += r.counts[e];
    m->pairs += r.pairs;
    m->dropped += r.dropped;
    m->aux += r.aux;
  }
  return out;
}

std::string fmt_duration(double s) {
  const int64_t t = static_cast<int64_t>(s);
  if (t >= 3600) return absl::StrFormat("%dh%02dm", t / 3600, (t / 60) % 60);
  if (t >= 60) return absl::StrFormat("%dm%02ds", t / 60, t % 60);
  return absl::StrFormat("%ds", t);
}

constexpr int kTagActivation = 11, kTagGradient = 12;

// One rank's view of the pipeline: the pp group (group rank = stage) and this stage.
struct Pipe {
  parallel::Communicator* pp = nullptr;
  int stage = 0, stages = 1;
  bool first() const { return stage == 0; }
  bool last() const { return stage == stages - 1; }
};

// Posts the given sends and receives together (no ordering deadlock between neighbours).
absl::Status pipe_p2p(const Pipe& p, std::vector<parallel::P2POp> ops) {
  if (ops.empty()) return absl::OkStatus();
  return p.pp->batch_p2p(ops);
}

// Sum over the world of a few f32 values (the step's loss shares, norm and stop flag).
absl::Status world_sum(parallel::ProcessGroups* g, std::vector<float>& v) {
  if (g == nullptr || g->world->size() == 1) return absl::OkStatus();
  Tensor t = Tensor::from_floats({static_cast<int64_t>(v.size())}, v);
  CMOE_RETURN_IF_ERROR(g->world->all_reduce(t));
  for (size_t i = 0; i < v.size(); ++i) v[i] = t.data<float>()[i];
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<EvalResult> evaluate(Model& model, const BatchFn& next, int64_t batches, const ForwardOptions& opt,
                                    parallel::ProcessGroups* groups) {
  ag::NoGradGuard no_grad;
  Pipe pipe;
  if (groups != nullptr) pipe = {groups->pp.get(), groups->place.pp_rank, groups->layout.pp};
  EvalResult r;
  double sum = 0;
  std::vector<RouterReport> reports;
  for (int64_t b = 0; b < batches; ++b) {
    CMOE_ASSIGN_OR_RETURN(Batch batch, next());
    ag::Var x_in;
    if (!pipe.first()) {
      Tensor buf = Tensor::empty({batch.ids.numel(), model.config().d_model()}, DType::kF32);
      CMOE_RETURN_IF_ERROR(pipe.pp->recv(buf, pipe.stage - 1, kTagActivation));
      x_in = ag::Var(buf);
    }
    ForwardResult f = model.forward_stage(batch.ids, x_in, batch.targets, opt);
    if (!pipe.last()) CMOE_RETURN_IF_ERROR(pipe.pp->send(f.hidden.value(), pipe.stage + 1, kTagActivation));
    sum += f.ce * static_cast<double>(f.global_tokens);  // this rank's summed CE
    r.tokens += f.tokens;
    reports.insert(reports.end(), f.routers.begin(), f.routers.end());
  }
  if (groups != nullptr && groups->world->size() > 1) {
    std::vector<float> v = {static_cast<float>(sum), static_cast<float>(r.tokens)};
    CMOE_RETURN_IF_ERROR(world_sum(groups, v));
    sum = v[0];
    r.tokens = static_cast<int64_t>(v[1] + 0.5f);
  }
  r.loss = r.tokens > 0 ? sum / r.tokens : 0;
  r.ppl = std::exp(r.loss);
  r.routers = merge_reports(reports);
  return r;
}

absl::StatusOr<TrainSummary> train_loop(const config::RunConfig& cfg, Model& model, AdamW& opt,
                                        int64_t start_step, const std::string& run_dir, TrainHooks& hooks,
                                        parallel::ProcessGroups* groups) {
  const auto& t = cfg.train();
  ForwardOptions fopt;
  fopt.compute_dtype = t.precision() == "bf16" ? DType::kBF16 : DType::kF32;
  fopt.recompute_attention = t.recompute();
  const int64_t end_step = t.exit_at_step() > 0 ? t.exit_at_step() : t.steps();
  const double peak = ops::matmul_peak_gflops(fopt.compute_dtype) * 1e9;
  const double flops_per_token = model.flops_per_token();
  const int64_t M = t.grad_accum();

  const bool parallel = groups != nullptr && groups->world->size() > 1;
  const bool rank0 = !parallel || groups->world->rank() == 0;
  const int dp = parallel ? groups->layout.dp : 1, ep = parallel ? groups->layout.ep : 1;
  Pipe pipe;
  if (parallel) pipe = {groups->pp.get(), groups->place.pp_rank, groups->layout.pp};
  std::unique_ptr<GradReducer> reducer;
  const bool zero1 = dp > 1 && cfg.parallel().distributed_optimizer();
  if (dp > 1) {
    reducer = std::make_unique<GradReducer>(&model.params(), groups->dp.get(), groups->edp.get(), dp,
                                            GradReducer::kBucketElems, zero1);
    model.set_grad_ready(reducer->hook());
    if (zero1) opt.shard(reducer->owned());
  }

  std::ofstream metrics;
  if (rank0) {
    metrics.open(run_dir + "/metrics.jsonl", std::ios::app);
    if (!metrics) return absl::InternalError(absl::StrCat("cannot open ", run_dir, "/metrics.jsonl for writing"));
  }

  TrainSummary summary;
  summary.steps_done = start_step;
  auto run_eval = [&](int64_t step) -> absl::Status {
    if (!hooks.valid_batches) return absl::OkStatus();
    CMOE_ASSIGN_OR_RETURN(EvalResult ev, evaluate(model, hooks.valid_batches(), t.eval_batches(), fopt, groups));
    summary.final_eval = ev;
    if (!rank0) return absl::OkStatus();
    std::printf("eval  step %lld | val loss %.4f | val ppl %.2f | %lld tokens\n", static_cast<long long>(step),
                ev.loss, ev.ppl, static_cast<long long>(ev.tokens));
    metrics << absl::StrFormat("{\"step\": %d, \"val_loss\": %.6f, \"val_ppl\": %.4f, \"val_tokens\": %d}\n", step,
                               ev.loss, ev.ppl, ev.tokens);
    metrics.flush();
    return absl::OkStatus();
  };

  const auto t_start = std::chrono::steady_clock::now();
  for (int64_t step = start_step; step < end_step; ++step) {
    const auto t0 = std::chrono::steady_clock::now();
    double loss_sum = 0, aux_sum = 0;
    int64_t tokens = 0;
    std::vector<RouterReport> reports;

    // One micro-batch forward on this stage; its input (a leaf that collects the gradient to
    // send back) and result wait in `inflight` for the backward.
    struct InFlight {
      ag::Var input;
      ForwardResult f;
    };
    std::deque<InFlight> inflight;
    int64_t forwards = 0;
    Tensor pending_input;  // the next micro-batch's activation, already received
    auto forward = [&]() -> absl::Status {
      CMOE_ASSIGN_OR_RETURN(Batch batch, hooks.next_train());
      InFlight it;
      if (!pipe.first()) it.input = ag::Var(pending_input, true);
      ForwardOptions o = fopt;
      o.final_micro_batch = forwards == M - 1;
      ++forwards;
      it.f = model.forward_stage(batch.ids, it.input, batch.targets, o);
      loss_sum += it.f.ce;
      aux_sum += it.f.aux;
      tokens += batch.ids.numel();
      reports.insert(reports.end(), it.f.routers.begin(), it.f.routers.end());
      inflight.push_back(std::move(it));
      return absl::OkStatus();
    };
    auto activation_buffer = [&]() {
      return Tensor::empty({t.micro_batch_size() * cfg.model().seq_len(), cfg.model().d_model()}, DType::kF32);
    };
    // Backward of the oldest in-flight micro-batch, given the gradient of its output (last
    // stage: none, the loss is the root). Returns the gradient of its input.
    auto backward = [&](const Tensor& grad_out) -> Tensor {
      InFlight it = std::move(inflight.front());
      inflight.pop_front();
      const Tensor seed = Tensor::full({}, 1.0f / static_cast<float>(M));
      if (pipe.last()) {
        ag::backward({it.f.loss}, {seed});
      } else {
        std::vector<ag::Var> roots = {it.f.hidden};
        std::vector<Tensor> grads = {grad_out};
        if (it.f.loss.defined()) roots.push_back(it.f.loss), grads.push_back(seed);
        ag::backward(roots, grads);
      }
      if (pipe.first()) return Tensor();
      Tensor g = it.input.grad();
      return g.defined() ? g : Tensor::zeros(it.input.shape(), DType::kF32);
    };

    if (pipe.stages == 1) {
      for (int64_t micro = 0; micro < M; ++micro) {
        CMOE_RETURN_IF_ERROR(forward());
        backward(Tensor());
      }
    } else {
      // 1F1B (PipeDream-Flush, Megatron's schedule): stage s runs min(P - s - 1, M) warm-up
      // forwards, then alternates one forward and one backward, then drains the backwards.
      // Neighbour transfers that cross are posted together (batch_p2p), so blocking
      // rendezvous sends cannot deadlock.
      const int64_t warmup = std::min<int64_t>(pipe.stages - pipe.stage - 1, M), steady = M - warmup;
      const int prev = pipe.stage - 1, next = pipe.stage + 1;
      auto recv_forward = [&]() -> absl::Status {
        if (pipe.first()) return absl::OkStatus();
        pending_input = activation_buffer();
        return pipe_p2p(pipe, {{parallel::P2POp::kRecv, pending_input, prev, kTagActivation}});
      };
      auto out_of = [&]() { return inflight.back().f.hidden.value(); };
      for (int64_t i = 0; i < warmup; ++i) {
        CMOE_RETURN_IF_ERROR(recv_forward());
        CMOE_RETURN_IF_ERROR(forward());
        CMOE_RETURN_IF_ERROR(pipe_p2p(pipe, {{parallel::P2POp::kSend, out_of(), next, kTagActivation}}));
      }
      if (steady > 0) CMOE_RETURN_IF_ERROR(recv_forward());
      for (int64_t i = 0; i < steady; ++i) {
        CMOE_RETURN_IF_ERROR(forward());
        Tensor grad_out;
        if (!pipe.last()) {  // send this output, receive the oldest one's gradient
          grad_out = activation_buffer();
          CMOE_RETURN_IF_ERROR(pipe_p2p(pipe, {{parallel::P2POp::kSend, out_of(), next, kTagActivation},
                                               {parallel::P2POp::kRecv, grad_out, next, kTagGradient}}));
        }
        Tensor grad_in = backward(grad_out);
        if (pipe.first()) continue;
        std::vector<parallel::P2POp> ops = {{parallel::P2POp::kSend, grad_in, prev, kTagGradient}};
        if (i + 1 < steady) {  // and receive the next micro-batch's input
          pending_input = activation_buffer();
          ops.push_back({parallel::P2POp::kRecv, pending_input, prev, kTagActivation});
        }
        CMOE_RETURN_IF_ERROR(pipe_p2p(pipe, ops));
      }
      for (int64_t i = 0; i < warmup; ++i) {
        Tensor grad_out = activation_buffer();
        CMOE_RETURN_IF_ERROR(pipe_p2p(pipe, {{parallel::P2POp::kRecv, grad_out, next, kTagGradient}}));
        Tensor grad_in = backward(grad_out);
        if (!pipe.first()) CMOE_RETURN_IF_ERROR(pipe_p2p(pipe, {{parallel::P2POp::kSend, grad_in, prev, kTagGradient}}));
      }
    }
    if (reducer) {
      CMOE_RETURN_IF_ERROR(reducer->finish());
      if (rank0 && step == start_step) {
        std::printf("data parallel: %d gradient buckets, %d launched during backward%s\n", reducer->num_buckets(),
                    reducer->launched_during_backward(),
                    zero1 ? "; distributed optimizer (ZeRO-1): reduce-scatter, owner update, all-gather" : "");
      }
    }

    // Global gradient norm: a replicated parameter counted once over its dp copies, an expert
    // slice once over its dp / ep copies, summed over the stages. (ZeRO-1: only the owner has
    // the gradient, so each counts once as it is.)
    double sq = 0;
    for (const Param& p : model.params()) {
      if (!p.var.grad().defined()) continue;
      const double copies = zero1 ? 1.0 : (p.expert ? static_cast<double>(dp) / ep : static_cast<double>(dp));
      sq += ops::sum_squares(p.var.grad()) / copies;
    }
    bool stop = hooks.stop_requested && hooks.stop_requested();
    if (parallel) {
      // Loss shares live on the last stage; each stage's aux is the same on its dp ranks.
      std::vector<float> v = {pipe.last() ? static_cast<float>(loss_sum) : 0.0f, static_cast<float>(aux_sum / dp),
                              static_cast<float>(sq), stop ? 1.0f : 0.0f};
      CMOE_RETURN_IF_ERROR(world_sum(groups, v));
      loss_sum = v[0];
      aux_sum = v[1];
      sq = v[2];
      stop = v[3] > 0;
      tokens *= dp;
    }
    const double grad_norm = std::sqrt(sq);
    if (!std::isfinite(grad_norm)) {
      return absl::InternalError(absl::StrCat("step ", step + 1, ": gradient norm is ", grad_norm,
                                              " (loss ", loss_sum / M, "); stopping before the update"));
    }
    const float clip = t.grad_clip() > 0 && grad_norm > t.grad_clip() ? static_cast<float>(t.grad_clip() / grad_norm) : 1.0f;
    const float lr = lr_at(step, t);
    opt.step(lr, clip);
    if (zero1) CMOE_RETURN_IF_ERROR(reducer->gather_params());
    for (Param& p : model.params()) p.var.zero_grad();
    reports = merge_reports(reports);
    if (cfg.model().moe().aux_free_bias()) model.update_router_biases(reports, cfg.model().moe().aux_free_bias_rate());

    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double tps = tokens / secs, mfu = flops_per_token * tps / peak / (parallel ? groups->world->size() : 1);
    const double loss = loss_sum / M;
    summary.final_train_loss = loss;
    summary.steps_done = step + 1;
    const bool last = step + 1 == end_step;

    if (rank0) {
      std::string routers;
      for (const RouterReport& r : reports) {
        LoadStats s = load_stats(r);
        absl::StrAppend(&routers, routers.empty() ? "" : ", ",
                        absl::StrFormat("\"%s\": {\"max_over_mean\": %.4f, \"cv\": %.4f, \"dropped_frac\": %.6f}", r.name,
                                        s.max_over_mean, s.cv, s.dropped_frac));
      }
      metrics << absl::StrFormat(
          "{\"step\": %d, \"loss\": %.6f, \"aux_loss\": %.6f, \"lr\": %.6e, \"grad_norm\": %.6f, \"tokens_per_s\": %.2f, "
          "\"mfu\": %.6f, \"tokens\": %d, \"step_s\": %.4f, \"expert_load\": {%s}}\n",
          step + 1, loss, aux_sum / M, lr, grad_norm, tps, mfu, tokens, secs, routers);
      if ((step + 1) % t.log_interval() == 0 || step + 1 == end_step || step == start_step) {
        metrics.flush();
        const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
        const double eta = elapsed / (step + 1 - start_step) * (end_step - step - 1);
        double worst = 0;
        for (const RouterReport& r : reports) worst = std::max(worst, load_stats(r).max_over_mean);
        std::printf("step %lld/%lld | loss %.4f | lr %.2e | gnorm %.3f | %.0f tok/s | mfu %.1f%% | load max/mean %.2f | eta %s\n",
                    static_cast<long long>(step + 1), static_cast<long long>(t.steps()), loss, lr, grad_norm, tps,
                    100 * mfu, worst, fmt_duration(eta).c_str());
        std::fflush(stdout);
      }
    }
    // Checkpoint work at this step boundary (a save, or an asynchronous save's commit), after
    // the step's record is written (a crash here loses no record the checkpoint covers) and
    // timed apart from the step: a {"step", "ckpt_s"} record.
    const int64_t ci = cfg.checkpoint().interval();
    const auto tc = std::chrono::steady_clock::now();
    bool ckpt_work = false;
    if (hooks.step_end) {
      CMOE_ASSIGN_OR_RETURN(bool committed, hooks.step_end(step + 1));
      ckpt_work = committed;
    }
    if (hooks.save && (last || stop || (ci > 0 && (step + 1) % ci == 0))) {
      CMOE_RETURN_IF_ERROR(hooks.save(step + 1, model, opt));
      ckpt_work = true;
    }
    if (rank0 && ckpt_work) {
      const double ckpt_secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - tc).count();
      metrics << absl::StrFormat("{\"step\": %d, \"ckpt_s\": %.4f}\n", step + 1, ckpt_secs);
      metrics.flush();
    }
    if ((step + 1) % t.eval_interval() == 0 && !last) CMOE_RETURN_IF_ERROR(run_eval(step + 1));
    if (stop && !last) {
      if (rank0) std::printf("stopping at step %lld on request (checkpoint saved)\n", static_cast<long long>(step + 1));
      return summary;
    }
  }
  CMOE_RETURN_IF_ERROR(run_eval(summary.steps_done));
  return summary;
}

}  // namespace cmoe
