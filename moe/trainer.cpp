// trainer.cpp — the training loop and evaluation (see trainer.h).
#include "moe/trainer.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/ops/matmul.h"

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

}  // namespace

absl::StatusOr<EvalResult> evaluate(Model& model, const BatchFn& next, int64_t batches, const ForwardOptions& opt) {
  ag::NoGradGuard no_grad;
  EvalResult r;
  double sum = 0;
  std::vector<RouterReport> reports;
  for (int64_t b = 0; b < batches; ++b) {
    CMOE_ASSIGN_OR_RETURN(Batch batch, next());
    ForwardResult f = model.forward(batch.ids, batch.targets, opt);
    sum += f.ce * f.tokens;
    r.tokens += f.tokens;
    reports.insert(reports.end(), f.routers.begin(), f.routers.end());
  }
  r.loss = r.tokens > 0 ? sum / r.tokens : 0;
  r.ppl = std::exp(r.loss);
  r.routers = merge_reports(reports);
  return r;
}

absl::StatusOr<TrainSummary> train_loop(const config::RunConfig& cfg, Model& model, AdamW& opt,
                                        int64_t start_step, const std::string& run_dir, TrainHooks& hooks) {
  const auto& t = cfg.train();
  ForwardOptions fopt;
  fopt.compute_dtype = t.precision() == "bf16" ? DType::kBF16 : DType::kF32;
  fopt.recompute_attention = t.recompute();
  const int64_t end_step = t.exit_at_step() > 0 ? t.exit_at_step() : t.steps();
  const double peak = ops::matmul_peak_gflops(fopt.compute_dtype) * 1e9;
  const double flops_per_token = model.flops_per_token();

  std::ofstream metrics(run_dir + "/metrics.jsonl", std::ios::app);
  if (!metrics) return absl::InternalError(absl::StrCat("cannot open ", run_dir, "/metrics.jsonl for writing"));

  TrainSummary summary;
  summary.steps_done = start_step;
  auto run_eval = [&](int64_t step) -> absl::Status {
    if (!hooks.valid_batches) return absl::OkStatus();
    CMOE_ASSIGN_OR_RETURN(EvalResult ev, evaluate(model, hooks.valid_batches(), t.eval_batches(), fopt));
    summary.final_eval = ev;
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
    for (int64_t micro = 0; micro < t.grad_accum(); ++micro) {
      CMOE_ASSIGN_OR_RETURN(Batch batch, hooks.next_train());
      ForwardResult f = model.forward(batch.ids, batch.targets, fopt);
      ag::backward(ag::scale(f.loss, 1.0f / static_cast<float>(t.grad_accum())));
      loss_sum += f.ce;
      aux_sum += f.aux;
      tokens += batch.ids.numel();
      reports.insert(reports.end(), f.routers.begin(), f.routers.end());
    }
    const double grad_norm = grad_global_norm(model.params());
    if (!std::isfinite(grad_norm)) {
      return absl::InternalError(absl::StrCat("step ", step + 1, ": gradient norm is ", grad_norm,
                                              " (loss ", loss_sum / t.grad_accum(), "); stopping before the update"));
    }
    const float clip = t.grad_clip() > 0 && grad_norm > t.grad_clip() ? static_cast<float>(t.grad_clip() / grad_norm) : 1.0f;
    const float lr = lr_at(step, t);
    opt.step(lr, clip);
    for (Param& p : model.params()) p.var.zero_grad();
    reports = merge_reports(reports);
    if (cfg.model().moe().aux_free_bias()) model.update_router_biases(reports, cfg.model().moe().aux_free_bias_rate());

    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double tps = tokens / secs, mfu = flops_per_token * tps / peak;
    const double loss = loss_sum / t.grad_accum();
    summary.final_train_loss = loss;
    summary.steps_done = step + 1;

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
        step + 1, loss, aux_sum / t.grad_accum(), lr, grad_norm, tps, mfu, tokens, secs, routers);
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
    const bool last = step + 1 == end_step;
    const bool stop = hooks.stop_requested && hooks.stop_requested();
    if ((step + 1) % t.eval_interval() == 0 && !last) CMOE_RETURN_IF_ERROR(run_eval(step + 1));
    const int64_t ci = cfg.checkpoint().interval();
    if (hooks.save && (last || stop || (ci > 0 && (step + 1) % ci == 0))) {
      CMOE_RETURN_IF_ERROR(hooks.save(step + 1, model, opt));
    }
    if (stop && !last) {
      std::printf("stopping at step %lld on request (checkpoint saved)\n", static_cast<long long>(step + 1));
      return summary;
    }
  }
  CMOE_RETURN_IF_ERROR(run_eval(summary.steps_done));
  return summary;
}

}  // namespace cmoe
