// profile.cpp — the profile window, trace file and summary (see profile.h).
#include "moe/train/profile.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "core/json.h"
#include "core/ops/matmul.h"

namespace cmoe {

absl::StatusOr<ProfileWindow> parse_profile_steps(const std::string& text) {
  ProfileWindow w;
  if (text.empty()) return w;
  std::vector<std::string> parts = absl::StrSplit(text, ':');
  if (parts.size() != 2 || !absl::SimpleAtoi(parts[0], &w.first) || !absl::SimpleAtoi(parts[1], &w.last) ||
      w.first < 1 || w.last < w.first) {
    return absl::InvalidArgumentError(absl::StrCat("config: train.profile_steps = \"", text,
                                                   "\"; expected \"A:B\", steps 1 <= A <= B (e.g. \"10:12\")"));
  }
  return w;
}

namespace {

std::string kind_of(const prof::Event& e) {
  return e.cat == prof::Cat::kOpBackward ? absl::StrCat(e.name, " backward") : std::string(e.name);
}

bool matmul_like(const ProfileRow& r) { return r.flops > 0; }

}  // namespace

ProfileSummary summarize_profile(const std::vector<prof::Event>& events, double peak_flops, double memory_bytes_per_s) {
  ProfileSummary s;
  s.peak_flops = peak_flops;
  s.memory_bytes_per_s = memory_bytes_per_s;
  int tid = -1;
  for (const prof::Event& e : events)
    if (e.cat == prof::Cat::kStep) tid = e.tid;
  if (tid < 0) return s;
  // The training thread's events by begin (outer before inner on ties), nested by a stack:
  // self time = duration minus the durations of direct children.
  std::vector<prof::Event> ev;
  for (const prof::Event& e : events)
    if (e.tid == tid) ev.push_back(e);
  std::sort(ev.begin(), ev.end(), [](const prof::Event& a, const prof::Event& b) {
    return a.begin_ns != b.begin_ns ? a.begin_ns < b.begin_ns : a.end_ns > b.end_ns;
  });
  std::vector<double> child_ns(ev.size(), 0);
  std::vector<size_t> stack;
  std::vector<bool> in_step(ev.size(), false);
  for (size_t i = 0; i < ev.size(); ++i) {
    while (!stack.empty() && ev[stack.back()].end_ns <= ev[i].begin_ns) stack.pop_back();
    if (!stack.empty()) {
      child_ns[stack.back()] += static_cast<double>(ev[i].end_ns - ev[i].begin_ns);
      in_step[i] = in_step[stack.back()] || ev[stack.back()].cat == prof::Cat::kStep;
    }
    stack.push_back(i);
  }
  std::map<std::pair<std::string, std::string>, ProfileRow> rows;
  for (size_t i = 0; i < ev.size(); ++i) {
    const prof::Event& e = ev[i];
    const double dur = static_cast<double>(e.end_ns - e.begin_ns);
    if (e.cat == prof::Cat::kStep) {
      ++s.steps;
      s.step_s += dur * 1e-9;
      s.covered_s += child_ns[i] * 1e-9;
      continue;
    }
    ProfileRow& r = rows[{kind_of(e), prof::cat_name(e.cat)}];
    r.kind = kind_of(e);
    r.cat = prof::cat_name(e.cat);
    ++r.calls;
    r.self_s += (dur - child_ns[i]) * 1e-9;
    r.flops += e.flops;
    r.bytes += e.bytes;
  }
  for (auto& [key, r] : rows) s.rows.push_back(r);
  std::sort(s.rows.begin(), s.rows.end(), [](const ProfileRow& a, const ProfileRow& b) { return a.self_s > b.self_s; });
  return s;
}

std::string ProfileSummary::text() const {
  std::string out = absl::StrFormat(
      "profile: %d steps, %.3f s (%.1f ms/step), %.1f%% of it inside spans | matmul peak %.1f GFLOP/s, "
      "memory %.1f GB/s (measured)\n",
      steps, step_s, steps ? 1e3 * step_s / steps : 0.0, step_s > 0 ? 100 * covered_s / step_s : 0.0, peak_flops * 1e-9,
      memory_bytes_per_s * 1e-9);
  absl::StrAppendFormat(&out, "%-34s %-11s %7s %10s %7s %22s\n", "kind", "category", "calls", "self ms", "share",
                        "achieved");
  for (const ProfileRow& r : rows) {
    std::string rate;
    if (r.self_s > 0 && matmul_like(r)) {
      rate = absl::StrFormat("%.1f GFLOP/s (%.0f%%)", r.flops / r.self_s * 1e-9, 100 * r.flops / r.self_s / peak_flops);
    } else if (r.self_s > 0 && r.bytes > 0) {
      rate = absl::StrFormat("%.2f GB/s (%.0f%%)", r.bytes / r.self_s * 1e-9,
                             r.cat == "comm" ? 0.0 : 100 * r.bytes / r.self_s / memory_bytes_per_s);
      if (r.cat == "comm") rate = absl::StrFormat("%.2f GB/s", r.bytes / r.self_s * 1e-9);
    }
    absl::StrAppendFormat(&out, "%-34s %-11s %7d %10.2f %6.1f%% %22s\n", r.kind, r.cat, r.calls, 1e3 * r.self_s,
                          step_s > 0 ? 100 * r.self_s / step_s : 0.0, rate);
  }
  return out;
}

StepProfiler::StepProfiler(ProfileWindow window, std::string run_dir, int rank, bool rank0, double peak_flops)
    : window_(window), run_dir_(std::move(run_dir)), rank_(rank), rank0_(rank0), peak_flops_(peak_flops) {}

void StepProfiler::before_step(int64_t step) {
  if (window_.on() && step == window_.first) prof::start();
}

absl::StatusOr<std::string> StepProfiler::after_step(int64_t step) {
  if (!window_.on() || step != window_.last) return std::string();
  const std::vector<prof::Event> events = prof::stop();
  const double memory = ops::memory_bandwidth_gbs() * 1e9;  // measured after the capture
  const std::string dir = run_dir_ + "/profile";
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot create ", dir, ": ", ec.message()));

  json::Value trace = json::Value::array();
  for (const prof::Event& e : events) {
    json::Value o = json::Value::object();
    o.set("name", json::Value::string(kind_of(e)));
    o.set("cat", json::Value::string(prof::cat_name(e.cat)));
    o.set("ph", json::Value::string("X"));
    o.set("ts", json::Value::formatted(e.begin_ns * 1e-3, "%.3f"));
    o.set("dur", json::Value::formatted((e.end_ns - e.begin_ns) * 1e-3, "%.3f"));
    o.set("pid", json::Value::integer(rank_));
    o.set("tid", json::Value::integer(e.tid));
    json::Value args = json::Value::object();
    if (e.arg >= 0) args.set(e.cat == prof::Cat::kStep ? "step" : "index", json::Value::integer(e.arg));
    if (e.flops > 0) args.set("flops", json::Value::formatted(e.flops, "%.0f"));
    if (e.bytes > 0) args.set("bytes", json::Value::formatted(e.bytes, "%.0f"));
    o.set("args", std::move(args));
    trace.push_back(std::move(o));
  }
  json::Value doc = json::Value::object();
  doc.set("traceEvents", std::move(trace));
  doc.set("displayTimeUnit", json::Value::string("ms"));
  const std::string trace_path = absl::StrCat(dir, "/trace_rank", rank_, ".json");
  {
    std::ofstream out(trace_path);
    out << json::serialize(doc) << '\n';
    if (!out) return absl::InternalError(absl::StrCat("cannot write ", trace_path));
  }

  const ProfileSummary s = summarize_profile(events, peak_flops_, memory);
  json::Value js = json::Value::object();
  js.set("steps", json::Value::integer(s.steps));
  js.set("step_s", json::Value::number(s.step_s));
  js.set("covered_s", json::Value::number(s.covered_s));
  js.set("matmul_peak_flops", json::Value::number(s.peak_flops));
  js.set("memory_bytes_per_s", json::Value::number(s.memory_bytes_per_s));
  json::Value rows = json::Value::array();
  for (const ProfileRow& r : s.rows) {
    json::Value o = json::Value::object();
    o.set("kind", json::Value::string(r.kind));
    o.set("cat", json::Value::string(r.cat));
    o.set("calls", json::Value::integer(r.calls));
    o.set("self_s", json::Value::number(r.self_s));
    o.set("flops", json::Value::number(r.flops));
    o.set("bytes", json::Value::number(r.bytes));
    rows.push_back(std::move(o));
  }
  js.set("rows", std::move(rows));
  const std::string text = s.text();
  for (const auto& [path, body] : {std::pair{absl::StrCat(dir, "/summary_rank", rank_, ".txt"), text},
                                   {absl::StrCat(dir, "/summary_rank", rank_, ".json"), json::serialize(js, 2) + "\n"}}) {
    std::ofstream out(path);
    out << body;
    if (!out) return absl::InternalError(absl::StrCat("cannot write ", path));
  }
  if (!rank0_) return std::string();
  return absl::StrCat(text, "profile written to ", trace_path, " (open in Perfetto or chrome://tracing)\n");
}

}  // namespace cmoe
