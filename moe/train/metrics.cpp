// metrics.cpp — metrics.jsonl records and console lines (see metrics.h; fields in
// docs/metrics.md).
#include "moe/train/metrics.h"

#include <cmath>
#include <cstdio>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/json.h"
#include "moe/train/png.h"

namespace cmoe {

namespace {

std::string fmt_duration(double s) {
  const int64_t t = static_cast<int64_t>(s);
  if (t >= 3600) return absl::StrFormat("%dh%02dm", t / 3600, (t / 60) % 60);
  if (t >= 60) return absl::StrFormat("%dm%02ds", t / 60, t % 60);
  return absl::StrFormat("%ds", t);
}

json::Value fixed(double v, const char* fmt) { return json::Value::formatted(v, fmt); }

}  // namespace

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
    m->tokens += r.tokens;
    m->prob_tokens += r.prob_tokens;
    m->top1_prob_sum += r.top1_prob_sum;
    m->entropy_sum += r.entropy_sum;
    m->routed_gate_sum += r.routed_gate_sum;
  }
  return out;
}

absl::StatusOr<int64_t> metrics_drop_after(const std::string& run_dir, int64_t step) {
  const std::string path = run_dir + "/metrics.jsonl", tmp = path + ".tmp";
  std::ifstream in(path, std::ios::binary);
  if (!in) return 0;
  std::string kept, line;
  int64_t dropped = 0;
  while (std::getline(in, line)) {
    auto j = json::parse(line);
    const json::Value* s = j.ok() && j->is_object() ? j->find("step") : nullptr;
    if (!j.ok() || !j->is_object() || (s != nullptr && (!s->is_int() || s->as_int() > step))) {
      ++dropped;  // superseded by the resumed run, or torn by the crash
      continue;
    }
    kept += line;
    kept += '\n';
  }
  if (in.bad()) return absl::InternalError(absl::StrCat("cannot read ", path));
  if (dropped == 0) return 0;
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << kept;
    out.flush();
    if (!out) return absl::InternalError(absl::StrCat("cannot write ", tmp));
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot rename ", tmp, " to ", path, ": ", ec.message()));
  return dropped;
}

absl::StatusOr<MetricsWriter> MetricsWriter::open(const std::string& run_dir, bool active, double flops_per_token,
                                                  double peak_flops, int ranks, int64_t steps, int64_t log_interval,
                                                  bool tensorboard) {
  MetricsWriter w;
  w.active_ = active;
  w.flops_per_token_ = flops_per_token;
  w.peak_ = peak_flops;
  w.ranks_ = ranks;
  w.steps_ = steps;
  w.log_interval_ = log_interval;
  w.start_ = std::chrono::steady_clock::now();
  if (active) {
    w.out_.open(run_dir + "/metrics.jsonl", std::ios::app);
    if (!w.out_) return absl::InternalError(absl::StrCat("cannot open ", run_dir, "/metrics.jsonl for writing"));
    if (tensorboard) {
      CMOE_ASSIGN_OR_RETURN(w.tb_, TensorBoardWriter::open(run_dir));
    }
  }
  return w;
}

void MetricsWriter::tb_write(int64_t step, const tensorboard::Summary& s, bool flush) {
  if (!tb_) return;
  absl::Status st = s.value_size() > 0 ? tb_->write(step, s) : absl::OkStatus();
  if (st.ok() && flush) st = tb_->flush();
  if (!st.ok()) {
    std::fprintf(stderr, "cmoe: %s; TensorBoard output stops here (metrics.jsonl continues)\n",
                 std::string(st.message()).c_str());
    tb_.reset();
  }
}

void MetricsWriter::routing(const RoutingInterval& r) {
  json::Value j = json::Value::object();
  j.set("step", json::Value::integer(r.last_step));
  j.set("routing", routing_interval_to_json(r));
  out_ << json::serialize_line(j) << '\n';
  if (!tb_) return;
  tensorboard::Summary s;
  for (const RouterReport& rr : r.routers) summary_add_index_histogram(&s, "routing/" + rr.name + "/load", rr.counts);
  for (const CoUsage& c : r.co_usage) {
    // Cells of at least 4 px, images of about 256 px a side (16 px cells for N = 16).
    const int cell = static_cast<int>(std::max<int64_t>(4, 256 / std::max(c.experts_a, c.experts_b)));
    int w = 0, h = 0;
    const std::string png = png_heatmap(c.counts, static_cast<int>(c.experts_a), static_cast<int>(c.experts_b), cell, &w, &h);
    summary_add_png(&s, "co_usage/" + c.layer, png, w, h);
  }
  tb_write(r.last_step, s, false);
}

void MetricsWriter::step(const StepRecord& r, int64_t first_step, int64_t end_step) {
  if (!active_) return;
  const double tps = tokens_per_s(r), m = mfu(r);
  json::Value load = json::Value::object();
  for (const RouterReport& rr : r.routers) {
    const LoadStats s = load_stats(rr);
    json::Value o = json::Value::object();
    o.set("max_over_mean", fixed(s.max_over_mean, "%.4f"));
    o.set("cv", fixed(s.cv, "%.4f"));
    o.set("dropped_frac", fixed(s.dropped_frac, "%.6f"));
    load.set(rr.name, std::move(o));
  }
  json::Value j = json::Value::object();
  j.set("step", json::Value::integer(r.step));
  j.set("loss", fixed(r.loss, "%.6f"));
  j.set("aux_loss", fixed(r.aux, "%.6f"));
  j.set("lr", fixed(r.lr, "%.6e"));
  j.set("grad_norm", fixed(r.grad_norm, "%.6f"));
  j.set("tokens_per_s", fixed(tps, "%.2f"));
  j.set("mfu", fixed(m, "%.6f"));
  j.set("tokens", json::Value::integer(r.tokens));
  j.set("step_s", fixed(r.seconds, "%.4f"));
  if (r.peak_device_mb >= 0) j.set("peak_device_mb", fixed(r.peak_device_mb, "%.1f"));
  j.set("expert_load", std::move(load));
  j.set("compute_s", fixed(std::max(0.0, r.seconds - r.data_s - r.comm_s), "%.4f"));
  j.set("comm_wait_s", fixed(r.comm_s, "%.4f"));
  j.set("data_wait_s", fixed(r.data_s, "%.4f"));
  // World rank 0's traffic of the step per kind of operation (bytes as parallel::CommCounters
  // defines them; docs/metrics.md).
  json::Value calls = json::Value::object(), bytes = json::Value::object();
  for (int k = 0; k < parallel::kNumCommKinds; ++k) {
    const char* name = parallel::comm_kind_name(static_cast<parallel::CommKind>(k));
    calls.set(name, json::Value::integer(r.comm.calls[k]));
    bytes.set(name, json::Value::integer(r.comm.bytes[k]));
  }
  j.set("comm_calls", std::move(calls));
  j.set("comm_bytes", std::move(bytes));
  out_ << json::serialize_line(j) << '\n';
  if (tb_) {
    tensorboard::Summary s;
    summary_add_scalar(&s, "train/loss", r.loss);
    summary_add_scalar(&s, "train/aux_loss", r.aux);
    summary_add_scalar(&s, "train/lr", r.lr);
    summary_add_scalar(&s, "train/grad_norm", r.grad_norm);
    summary_add_scalar(&s, "perf/tokens_per_s", tps);
    summary_add_scalar(&s, "perf/mfu", m);
    summary_add_scalar(&s, "time/step_s", r.seconds);
    summary_add_scalar(&s, "time/compute_s", std::max(0.0, r.seconds - r.data_s - r.comm_s));
    summary_add_scalar(&s, "time/comm_wait_s", r.comm_s);
    summary_add_scalar(&s, "time/data_wait_s", r.data_s);
    for (const RouterReport& rr : r.routers) {
      const LoadStats ls = load_stats(rr);
      summary_add_scalar(&s, "routing/" + rr.name + "/max_over_mean", ls.max_over_mean);
      summary_add_scalar(&s, "routing/" + rr.name + "/cv", ls.cv);
      summary_add_scalar(&s, "routing/" + rr.name + "/dropped_frac", ls.dropped_frac);
    }
    tb_write(r.step, s, false);
  }
  if (r.routing) routing(*r.routing);
  if (r.step % log_interval_ != 0 && r.step != end_step && r.step != first_step + 1) return;
  out_.flush();
  if (tb_) tb_write(r.step, tensorboard::Summary(), true);
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double eta = elapsed / (r.step - first_step) * (end_step - r.step);
  double worst = 0;
  for (const RouterReport& rr : r.routers) worst = std::max(worst, load_stats(rr).max_over_mean);
  std::printf("step %lld/%lld | loss %.4f | lr %.2e | gnorm %.3f | %.0f tok/s | mfu %.1f%% | load max/mean %.2f | eta %s\n",
              static_cast<long long>(r.step), static_cast<long long>(steps_), r.loss, r.lr, r.grad_norm, tps, 100 * m,
              worst, fmt_duration(eta).c_str());
  std::fflush(stdout);
}

void MetricsWriter::eval(int64_t step, const EvalResult& ev) {
  if (!active_) return;
  std::printf("eval  step %lld | val loss %.4f | val ppl %.2f | %lld tokens\n", static_cast<long long>(step), ev.loss,
              ev.ppl, static_cast<long long>(ev.tokens));
  json::Value j = json::Value::object();
  j.set("step", json::Value::integer(step));
  j.set("val_loss", fixed(ev.loss, "%.6f"));
  j.set("val_ppl", fixed(ev.ppl, "%.4f"));
  j.set("val_tokens", json::Value::integer(ev.tokens));
  out_ << json::serialize_line(j) << '\n';
  out_.flush();
  tensorboard::Summary s;
  summary_add_scalar(&s, "val/loss", ev.loss);
  summary_add_scalar(&s, "val/ppl", ev.ppl);
  tb_write(step, s, true);
}

void MetricsWriter::checkpoint(int64_t step, double seconds) {
  if (!active_) return;
  json::Value j = json::Value::object();
  j.set("step", json::Value::integer(step));
  j.set("ckpt_s", fixed(seconds, "%.4f"));
  out_ << json::serialize_line(j) << '\n';
  out_.flush();
  tensorboard::Summary s;
  summary_add_scalar(&s, "time/checkpoint_s", seconds);
  tb_write(step, s, true);
}

}  // namespace cmoe
