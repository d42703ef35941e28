// cmd_plan.cpp — `cmoe plan`: memory, communication and step time of every (pp, dp, ep)
// layout of a config on N devices, ranked (the model: moe/train/plan.h, docs/planner.md).
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "core/json.h"
#include "launch/command_line.h"
#include "launch/commands.h"
#include "moe/params.h"
#include "moe/train/config.h"
#include "moe/train/hardware.h"
#include "moe/train/plan.h"
#include "parallel/communicator.h"

namespace cmoe {

namespace {

constexpr double kGiB = double(int64_t{1} << 30);
constexpr int64_t kMaxGpus = 65536;  // the planner walks every rank's group at most this wide

std::string gib(double bytes) { return absl::StrFormat("%.2f", bytes / kGiB); }

// "8", "1,2,4": positive integers.
bool parse_list(const std::string& text, std::vector<int64_t>* out) {
  for (absl::string_view part : absl::StrSplit(text, ',')) {
    int64_t v = 0;
    if (!absl::SimpleAtoi(part, &v) || v < 1) return false;
    out->push_back(v);
  }
  return !out->empty();
}

std::string bytes_str(double b) {
  if (b >= 1e9) return absl::StrFormat("%.2f GB", b * 1e-9);
  if (b >= 1e6) return absl::StrFormat("%.2f MB", b * 1e-6);
  if (b >= 1e3) return absl::StrFormat("%.1f kB", b * 1e-3);
  return absl::StrFormat("%.0f B", b);
}

std::string layout_str(const LayoutPlan& p) {
  return absl::StrFormat("pp %d, dp %d, ep %d%s, micro-batch %d, grad_accum %d", p.layout.pp, p.layout.dp, p.layout.ep,
                         p.zero1 ? ", ZeRO-1" : "", p.micro_batch, p.grad_accum);
}

json::Value counters_json(const parallel::CommCounters& c, bool calls) {
  json::Value o = json::Value::object();
  for (int k = 0; k < parallel::kNumCommKinds; ++k)
    o.set(parallel::comm_kind_name(static_cast<parallel::CommKind>(k)), json::Value::integer(calls ? c.calls[k] : c.bytes[k]));
  return o;
}

json::Value memory_json(const PlanMemory& m) {
  json::Value o = json::Value::object();
  for (auto [name, v] : {std::pair{"params", m.params}, {"grads", m.grads}, {"optimizer", m.optimizer},
                         {"master", m.master}, {"buffers", m.buffers}, {"grad_buckets", m.grad_buckets},
                         {"p2p_buffers", m.p2p_buffers}, {"activations_per_micro", m.activations_per_micro},
                         {"activations_per_micro_worst", m.activations_per_micro_worst},
                         {"dispatch_per_micro", m.dispatch_per_micro},
                         {"dispatch_per_micro_worst", m.dispatch_per_micro_worst}, {"in_flight", m.in_flight},
                         {"activations", m.activations}, {"transient", m.transient}, {"peak", m.peak},
                         {"peak_worst", m.peak_worst}})
    o.set(name, json::Value::integer(v));
  return o;
}

json::Value plan_json(const LayoutPlan& p) {
  json::Value o = json::Value::object();
  o.set("pp", json::Value::integer(p.layout.pp));
  o.set("dp", json::Value::integer(p.layout.dp));
  o.set("ep", json::Value::integer(p.layout.ep));
  o.set("zero1", json::Value::boolean(p.zero1));
  o.set("micro_batch", json::Value::integer(p.micro_batch));
  o.set("grad_accum", json::Value::integer(p.grad_accum));
  o.set("global_batch", json::Value::integer(p.global_batch));
  o.set("tokens_per_step", json::Value::integer(p.tokens_per_step));
  o.set("fits", json::Value::boolean(p.fits));
  o.set("peak_bytes", json::Value::integer(p.peak_bytes));
  o.set("peak_bytes_worst", json::Value::integer(p.peak_bytes_worst));
  o.set("capacity_bytes", json::Value::number(p.capacity_bytes));
  o.set("expert_imbalance", json::Value::number(p.expert_imbalance));
  o.set("step_s", json::Value::number(p.time.total));
  o.set("tokens_per_s", json::Value::number(p.tokens_per_s));
  o.set("mfu", json::Value::number(p.mfu));
  o.set("flops_per_step", json::Value::number(p.flops_per_step));
  json::Value t = json::Value::object();
  for (auto [name, v] : {std::pair{"compute", p.time.compute}, {"imbalance", p.time.imbalance}, {"bubble", p.time.bubble}, {"ep_comm", p.time.ep_comm},
                         {"pp_comm", p.time.pp_comm}, {"dp_comm", p.time.dp_comm}, {"optimizer", p.time.optimizer},
                         {"other", p.time.other}})
    t.set(name, json::Value::number(v));
  o.set("time", std::move(t));
  json::Value stages = json::Value::array();
  for (const RankPlan& r : p.stages) {
    json::Value s = json::Value::object();
    s.set("stage", json::Value::integer(r.stage));
    s.set("rank", json::Value::integer(r.rank));
    json::Value layers = json::Value::array();
    layers.push_back(json::Value::integer(r.layer_begin));
    layers.push_back(json::Value::integer(r.layer_end));
    s.set("layers", std::move(layers));
    s.set("param_count", json::Value::integer(r.param_count));
    s.set("optimizer_elems", json::Value::integer(r.optimizer_elems));
    s.set("memory", memory_json(r.mem));
    json::Value f = json::Value::object();
    f.set("forward", json::Value::number(r.fwd_flops));
    f.set("backward", json::Value::number(r.bwd_flops));
    f.set("recompute", json::Value::number(r.recompute_flops));
    f.set("routed_experts_forward", json::Value::number(r.expert_fwd_flops));
    s.set("flops_per_micro_batch", std::move(f));
    json::Value comm = json::Value::array();
    for (const PlanComm& c : r.comm) {
      json::Value e = json::Value::object();
      e.set("group", json::Value::string(c.group));
      e.set("group_size", json::Value::integer(c.group_size));
      e.set("kind", json::Value::string(parallel::comm_kind_name(c.kind)));
      e.set("what", json::Value::string(c.what));
      e.set("calls", json::Value::integer(c.calls));
      e.set("bytes", json::Value::integer(c.bytes));
      e.set("bytes_min", json::Value::integer(c.bytes_min));
      e.set("bytes_max", json::Value::integer(c.bytes_max));
      comm.push_back(std::move(e));
    }
    s.set("comm", std::move(comm));
    s.set("comm_calls", counters_json(r.counters(), true));
    s.set("comm_bytes", counters_json(r.counters(), false));
    s.set("comm_bytes_min", counters_json(r.counters_min(), false));
    s.set("comm_bytes_max", counters_json(r.counters_max(), false));
    stages.push_back(std::move(s));
  }
  o.set("stages", std::move(stages));
  return o;
}

void print_detail(const LayoutPlan& p) {
  std::printf("\n%s: %s\n", p.fits ? "best layout" : "layout (does not fit)", layout_str(p).c_str());
  std::printf("  step %.4g s = compute %.4g + expert imbalance %.4g + bubble %.4g + expert all-to-all %.4g + pipeline p2p %.4g + "
              "gradient reduce/gather %.4g + optimizer %.4g + other %.4g\n",
              p.time.total, p.time.compute, p.time.imbalance, p.time.bubble, p.time.ep_comm, p.time.pp_comm, p.time.dp_comm, p.time.optimizer,
              p.time.other);
  std::printf("  %lld tokens per step, %.4g tokens/s, MFU %.1f%%, %.3g model TFLOP per step\n",
              static_cast<long long>(p.tokens_per_step), p.tokens_per_s, 100 * p.mfu, p.flops_per_step * 1e-12);
  for (const RankPlan& r : p.stages) {
    const PlanMemory& m = r.mem;
    const double rank_flops = (r.fwd_flops + r.bwd_flops + r.recompute_flops) * double(p.grad_accum);
    std::printf("  stage %d (layers %d-%d%s%s), per rank:\n", r.stage, r.layer_begin, r.layer_end - 1,
                r.stage == 0 ? ", embedding" : "", r.stage + 1 == static_cast<int>(p.stages.size()) ? ", head" : "");
    std::printf("    %.4g TFLOP per rank per step (forward %.4g, backward %.4g, recomputation %.4g per micro-batch)\n",
                rank_flops * 1e-12, r.fwd_flops * 1e-12, r.bwd_flops * 1e-12, r.recompute_flops * 1e-12);
    std::printf("    memory, GiB: params %s  grads %s  optimizer %s  master 0 (the f32 params)  router biases %s\n",
                gib(m.params).c_str(), gib(m.grads).c_str(), gib(m.optimizer).c_str(), gib(m.buffers).c_str());
    std::printf("    activations %s (%s per micro-batch x %lld in flight; worst-case routing %s per micro-batch), "
                "of which expert dispatch %s (worst %s) per micro-batch\n",
                gib(m.activations).c_str(), gib(m.activations_per_micro).c_str(), static_cast<long long>(m.in_flight),
                gib(m.activations_per_micro_worst).c_str(), gib(m.dispatch_per_micro).c_str(),
                gib(m.dispatch_per_micro_worst).c_str());
    std::printf("    gradient buckets %s  pipeline buffers %s  largest temporary %s  => peak %s (worst-case routing %s)\n",
                gib(m.grad_buckets).c_str(), gib(m.p2p_buffers).c_str(), gib(m.transient).c_str(), gib(m.peak).c_str(),
                gib(m.peak_worst).c_str());
    std::printf("    communication per step (bytes handed to each operation by one rank):\n");
    for (const PlanComm& c : r.comm) {
      std::string range = c.bytes_min == c.bytes_max ? "" : absl::StrCat(" (", bytes_str(double(c.bytes_min)), " .. ",
                                                                         bytes_str(double(c.bytes_max)), ")");
      std::printf("      %-5s %-14s %-30s %6lld calls %10s%s\n", c.group.c_str(), parallel::comm_kind_name(c.kind),
                  c.what.c_str(), static_cast<long long>(c.calls), bytes_str(double(c.bytes)).c_str(), range.c_str());
    }
  }
}

}  // namespace

int cmd_plan(int argc, char** argv) {
  CommandSpec spec{"plan", config_flags(), {"config", "gpus"}};
  spec.flags.push_back({"gpus", true, false, "number of devices (ranks): every layout with pp * dp = N, ep | dp"});
  spec.flags.push_back({"gpus-per-node", true, false, "devices per node (default: the hardware's; cpu: all on one node)"});
  spec.flags.push_back({"hardware", true, false, "h100 | h200 | a100 | cpu (measured here) | FILE (default h100)"});
  spec.flags.push_back({"micro-batch", true, false, "micro-batch sizes to try, e.g. 1,2,4 (default: the config's)"});
  spec.flags.push_back({"grad-accum", true, false, "grad_accum values to try (default: the config's)"});
  spec.flags.push_back({"global-batch", true, false, "sequences per step; grad_accum = it / (micro-batch * dp)"});
  spec.flags.push_back({"zero1", true, false, "both | on | off: the distributed optimizer (default both)"});
  spec.flags.push_back({"mfu", true, false, "model FLOPs utilisation the compute time assumes (default: the hardware's)"});
  spec.flags.push_back({"expert-imbalance", true, false,
                        "F >= 1: the busiest ep rank's routed pairs over the mean (default: measured with cpu "
                        "or --calibrate, else 1)"});
  spec.flags.push_back({"layout", true, false, "PP,DP,EP: only this layout (0 = any)"});
  spec.flags.push_back({"top", true, false, "layouts to list (default 20; 0 = all)"});
  spec.flags.push_back({"write-hardware", true, false, "also write the hardware description used to FILE (cpu: measure once)"});
  spec.flags.push_back({"calibrate", false, false,
                        "CPU description FILE: measure the config's efficiencies here anyway (cpu always does)"});
  spec.flags.push_back({"json", false, false, "print JSON instead of tables"});
  auto flags = parse_command_line(spec, argc, argv, 2);
  if (!flags) return kExitUsage;
  auto usage_error = [&spec](const std::string& msg) {
    std::fprintf(stderr, "cmoe plan: %s\n%s", msg.c_str(), flags_usage(spec.name, spec.flags).c_str());
    return kExitUsage;
  };
  PlanOptions opt;
  int64_t v = 0;
  if (!absl::SimpleAtoi(flags->get("gpus"), &v) || v < 1 || v > kMaxGpus) {
    return usage_error(absl::StrCat("--gpus ", flags->get("gpus"), ": expected an integer in [1, ", kMaxGpus, "]"));
  }
  opt.gpus = static_cast<int>(v);
  if (flags->has("gpus-per-node")) {
    if (!absl::SimpleAtoi(flags->get("gpus-per-node"), &v) || v < 1 || v > kMaxGpus) {
      return usage_error(absl::StrCat("--gpus-per-node ", flags->get("gpus-per-node"), ": expected an integer >= 1"));
    }
    opt.gpus_per_node = static_cast<int>(v);
  }
  if (flags->has("micro-batch") && !parse_list(flags->get("micro-batch"), &opt.micro_batches)) {
    return usage_error(absl::StrCat("--micro-batch ", flags->get("micro-batch"), ": expected integers >= 1, comma-separated"));
  }
  if (flags->has("grad-accum") && !parse_list(flags->get("grad-accum"), &opt.grad_accums)) {
    return usage_error(absl::StrCat("--grad-accum ", flags->get("grad-accum"), ": expected integers >= 1, comma-separated"));
  }
  if (flags->has("global-batch")) {
    if (!absl::SimpleAtoi(flags->get("global-batch"), &opt.global_batch) || opt.global_batch < 1) {
      return usage_error(absl::StrCat("--global-batch ", flags->get("global-batch"), ": expected an integer >= 1"));
    }
    if (flags->has("grad-accum")) return usage_error("--grad-accum and --global-batch exclude each other");
  }
  const std::string z = flags->get("zero1", "both");
  if (z == "on") opt.zero1 = {true};
  else if (z == "off") opt.zero1 = {false};
  else if (z != "both") return usage_error(absl::StrCat("--zero1 ", z, ": expected both, on or off"));
  if (flags->has("mfu") && (!absl::SimpleAtod(flags->get("mfu"), &opt.mfu) || !(opt.mfu > 0 && opt.mfu <= 1))) {
    return usage_error(absl::StrCat("--mfu ", flags->get("mfu"), ": expected a fraction in (0, 1]"));
  }
  if (flags->has("expert-imbalance") &&
      (!absl::SimpleAtod(flags->get("expert-imbalance"), &opt.expert_imbalance) || !(opt.expert_imbalance >= 1 &&
                                                                                      opt.expert_imbalance <= 1e6))) {
    return usage_error(absl::StrCat("--expert-imbalance ", flags->get("expert-imbalance"), ": expected a number >= 1"));
  }
  if (flags->has("layout")) {
    const std::vector<std::string> parts = absl::StrSplit(flags->get("layout"), ',');
    int values[3] = {0, 0, 0};
    bool ok = parts.size() == 3;
    for (size_t i = 0; ok && i < 3; ++i) ok = absl::SimpleAtoi(parts[i], &values[i]) && values[i] >= 0;
    if (!ok) return usage_error(absl::StrCat("--layout ", flags->get("layout"), ": expected PP,DP,EP (integers, 0 = any)"));
    opt.only_pp = values[0];
    opt.only_dp = values[1];
    opt.only_ep = values[2];
  }
  int64_t top = 20;
  if (flags->has("top") && (!absl::SimpleAtoi(flags->get("top"), &top) || top < 0)) {
    return usage_error(absl::StrCat("--top ", flags->get("top"), ": expected an integer >= 0"));
  }

  auto cfg = config_load(flags->get("config"), flags->all("set"));
  if (!cfg.ok()) return command_failed("plan", cfg.status());
  // Measuring "cpu" under mpirun uses every rank (the link between them); world rank 0 prints.
  const std::string hw_name = flags->get("hardware", "h100");
  std::unique_ptr<parallel::Communicator> world;
  if (parallel::launched_by_mpi()) {
    auto w = parallel::make_world_communicator();
    if (!w.ok()) return command_failed("plan", w.status());
    world = std::move(*w);
  }
  auto hw = hardware_load(hw_name, world.get());
  if (!hw.ok()) return command_failed("plan", hw.status());
  const bool calibrate = !flags->has("mfu") && (hw_name == "cpu" || flags->has("calibrate"));
  if (calibrate && !hw->shared_node()) {
    return usage_error(absl::StrCat("--calibrate: ", hw->source, " is not a CPU node description (cores_per_node = 0)"));
  }
  if (world != nullptr && world->rank() != 0) {  // sleep while rank 0 calibrates, then leave
    if (calibrate) {
      absl::Status st = parallel::sleeping_barrier(*world);
      if (!st.ok()) return command_failed("plan", st);
    }
    return 0;
  }
  if (calibrate) {
    // The config's efficiencies on this machine, measured per micro-batch at the threads each
    // rank of these layouts gets (docs/planner.md): ranks fill one node, cores / ranks each.
    const int cores = hw->spec.cores_per_node();
    const int per_node = opt.gpus_per_node > 0 ? opt.gpus_per_node : opt.gpus;
    const int ranks = std::max(1, std::min(opt.gpus, per_node));
    const int threads = std::max(1, cores / ranks);
    std::vector<int64_t> mbs = opt.micro_batches;
    if (mbs.empty()) mbs.push_back(cfg->train().micro_batch_size());
    std::string measured;
    for (int64_t mb : mbs) {
      config::RunConfig c = *cfg;
      c.mutable_train()->set_micro_batch_size(static_cast<int32_t>(mb));
      const CpuCalibration cal = calibrate_cpu_mfu(c, *hw, threads, ranks);
      opt.calibration[mb] = cal;
      if (!cal.why.empty()) {
        absl::StrAppend(&measured, absl::StrFormat("; micro-batch %d not measured (%s), mfu %.2f kept", mb, cal.why,
                                                   hw->spec.mfu()));
        continue;
      }
      absl::StrAppend(&measured, absl::StrFormat("; micro-batch %d on %d thread%s: forward and backward %.3f s, mfu %.3f "
                                                 "without the LM head's cross-entropy, %.3f for it, AdamW %.1f GB/s%s",
                                                 mb, threads, threads == 1 ? "" : "s", cal.seconds, cal.mfu,
                                                 cal.head_mfu, cal.optimizer_gbs,
                                                 ranks > cores ? absl::StrFormat(" (%d ranks time-sharing %d cores keep %.2f of "
                                                                                 "their share, included)", ranks, cores, cal.sharing)
                                                               : std::string()));
      if (!cal.ep_imbalance.empty()) {
        absl::StrAppend(&measured, "; busiest expert-parallel rank's routed pairs over the mean at initialisation, on ",
                        cal.routing_source, ":");
        for (const auto& [ep, f] : cal.ep_imbalance) absl::StrAppend(&measured, absl::StrFormat(" ep %d %.3f", ep, f));
      }
      if (mb == mbs.front()) {  // what --write-hardware saves and --json shows
        hw->spec.set_mfu(cal.mfu);
        hw->spec.set_head_mfu(cal.head_mfu);
        hw->spec.set_optimizer_gbs(cal.optimizer_gbs);
      }
    }
    // A description written by an earlier calibration (--write-hardware) keeps its machine part.
    std::string machine = hw->spec.description();
    if (const size_t at = machine.find("; measured with "); at != std::string::npos) machine.resize(at);
    hw->spec.set_description(absl::StrCat(machine, "; measured with ", flags->get("config"), measured));
    if (world != nullptr) {
      absl::Status st = parallel::sleeping_barrier(*world);
      if (!st.ok()) return command_failed("plan", st);
    }
  }
  if (flags->has("write-hardware")) {
    const std::string path = flags->get("write-hardware");
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << hardware_to_text(*hw);
    out.flush();
    if (!out) return command_failed("plan", absl::InternalError(absl::StrCat("cannot write ", path)));
  }
  auto plans = plan_layouts(*cfg, *hw, opt);
  if (!plans.ok()) return command_failed("plan", plans.status());
  const size_t shown = top == 0 ? plans->size() : std::min<size_t>(plans->size(), static_cast<size_t>(top));

  const ParamCounts pc = count_params(cfg->model());
  if (flags->has("json")) {
    json::Value j = json::Value::object();
    j.set("config", json::Value::string(flags->get("config")));
    j.set("gpus", json::Value::integer(opt.gpus));
    j.set("gpus_per_node", json::Value::integer(plans->front().gpus_per_node));
    json::Value h = json::Value::object();
    h.set("name", json::Value::string(hw->spec.name()));
    h.set("source", json::Value::string(hw->source));
    h.set("description", json::Value::string(hw->spec.description()));
    h.set("peak_tflops_bf16", json::Value::number(hw->spec.peak_tflops_bf16()));
    h.set("peak_tflops_f32", json::Value::number(hw->spec.peak_tflops_f32()));
    h.set("mfu", json::Value::number(opt.mfu > 0 ? opt.mfu : hw->spec.mfu()));
    h.set("head_mfu", json::Value::number(opt.mfu > 0 ? opt.mfu : hw->spec.head_mfu() > 0 ? hw->spec.head_mfu() : hw->spec.mfu()));
    h.set("optimizer_gbs", json::Value::number(hw->spec.optimizer_gbs() > 0 ? hw->spec.optimizer_gbs() : hw->spec.memory_gbs()));
    h.set("memory_gib", json::Value::number(hw->spec.memory_gib()));
    h.set("memory_gbs", json::Value::number(hw->spec.memory_gbs()));
    h.set("intra_node_gbs", json::Value::number(hw->spec.intra_node_gbs()));
    h.set("intra_node_reduce_gbs", json::Value::number(hw->spec.intra_node_reduce_gbs()));
    h.set("inter_node_gbs", json::Value::number(hw->spec.inter_node_gbs()));
    h.set("intra_node_latency_us", json::Value::number(hw->spec.intra_node_latency_us()));
    h.set("cores_per_node", json::Value::integer(hw->spec.cores_per_node()));
    j.set("hardware", std::move(h));
    j.set("params_total", json::Value::integer(pc.total));
    j.set("params_activated", json::Value::integer(pc.activated));
    j.set("layouts_considered", json::Value::integer(static_cast<int64_t>(plans->size())));
    json::Value arr = json::Value::array();
    for (size_t i = 0; i < shown; ++i) arr.push_back(plan_json((*plans)[i]));
    j.set("layouts", std::move(arr));
    std::printf("%s\n", json::serialize_line(j).c_str());
    return 0;
  }

  const LayoutPlan& best = plans->front();
  std::printf("cmoe plan: %s on %d x %s (%d per node)\n", flags->get("config").c_str(), opt.gpus, hw->spec.name().c_str(),
              best.gpus_per_node);
  std::printf("hardware: %s\n", hw->spec.description().c_str());
  std::printf("model: %s, %.3gB parameters (%.3gB activated), %s, seq_len %d; compute at MFU %.0f%%\n",
              variant_name(cfg->model().moe().kind()).c_str(), pc.total * 1e-9, pc.activated * 1e-9,
              cfg->train().precision().c_str(), cfg->model().seq_len(), 100 * (opt.mfu > 0 ? opt.mfu : hw->spec.mfu()));
  std::printf("layouts: world = pp x dp ranks, ep divides dp (expert-parallel groups inside each data-parallel group), "
              "%zu considered; memory per rank against %s GiB usable\n\n",
              plans->size(), gib(best.capacity_bytes).c_str());
  std::printf("%4s %4s %5s %4s %5s %4s %5s %7s %9s %8s %5s %9s %11s %6s %8s %8s %8s %8s %8s %8s\n", "rank", "pp", "dp", "ep", "zero1",
              "mb", "ga", "batch", "peak GiB", "worst", "fits", "step s", "tokens/s", "MFU", "compute", "ep load", "bubble", "ep a2a",
              "pp p2p", "dp+opt");
  for (size_t i = 0; i < shown; ++i) {
    const LayoutPlan& p = (*plans)[i];
    std::printf("%4zu %4d %5d %4d %5s %4lld %5lld %7lld %9s %8s %5s %9.4g %11.4g %5.1f%% %8.3g %8.3g %8.3g %8.3g %8.3g %8.3g\n", i + 1,
                p.layout.pp, p.layout.dp, p.layout.ep, p.zero1 ? "on" : "off", static_cast<long long>(p.micro_batch),
                static_cast<long long>(p.grad_accum), static_cast<long long>(p.global_batch), gib(p.peak_bytes).c_str(),
                gib(p.peak_bytes_worst).c_str(), p.fits ? "yes" : "NO", p.time.total, p.tokens_per_s, 100 * p.mfu, p.time.compute,
                p.time.imbalance, p.time.bubble, p.time.ep_comm, p.time.pp_comm, p.time.dp_comm + p.time.optimizer + p.time.other);
  }
  if (shown < plans->size()) std::printf("... %zu more (--top 0 lists all)\n", plans->size() - shown);
  print_detail(best);
  return 0;
}

}  // namespace cmoe
