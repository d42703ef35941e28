// hardware.cpp — loading, checking and measuring hardware descriptions (see hardware.h).
#include "moe/train/hardware.h"

#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "core/ops/matmul.h"
#include "google/protobuf/text_format.h"
#include "moe/train/config.h"
#include "moe/train/hardware_builtin.h"

namespace cmoe {

namespace pb = google::protobuf;

double Hardware::peak_flops(DType compute) const {
  return (compute == DType::kBF16 ? spec.peak_tflops_bf16() : spec.peak_tflops_f32()) * 1e12;
}

double Hardware::usable_memory_bytes() const {
  return (spec.memory_gib() - spec.memory_reserved_gib()) * double(int64_t{1} << 30);
}

std::vector<std::string> hardware_names() {
  std::vector<std::string> names;
  for (const BuiltinHardware& b : kBuiltinHardware) names.push_back(b.name);
  names.push_back("cpu");
  return names;
}

namespace {

absl::Status check_spec(const config::HardwareSpec& s, const std::string& source) {
  auto positive = [&](const char* field, double v) -> absl::Status {
    if (v > 0) return absl::OkStatus();
    return absl::InvalidArgumentError(absl::StrCat(source, ": ", field, " = ", v, "; expected a positive number"));
  };
  CMOE_RETURN_IF_ERROR(positive("peak_tflops_bf16", s.peak_tflops_bf16()));
  CMOE_RETURN_IF_ERROR(positive("peak_tflops_f32", s.peak_tflops_f32()));
  CMOE_RETURN_IF_ERROR(positive("memory_gib", s.memory_gib()));
  CMOE_RETURN_IF_ERROR(positive("memory_gbs", s.memory_gbs()));
  CMOE_RETURN_IF_ERROR(positive("intra_node_gbs", s.intra_node_gbs()));
  CMOE_RETURN_IF_ERROR(positive("inter_node_gbs", s.inter_node_gbs()));
  CMOE_RETURN_IF_ERROR(positive("devices_per_node", s.devices_per_node()));
  if (!(s.mfu() > 0 && s.mfu() <= 1)) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": mfu = ", s.mfu(), "; expected a fraction in (0, 1]"));
  }
  if (!(s.head_mfu() >= 0 && s.head_mfu() <= 1)) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": head_mfu = ", s.head_mfu(), "; expected 0 (= mfu) or a fraction in (0, 1]"));
  }
  if (!(s.optimizer_gbs() >= 0)) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": optimizer_gbs = ", s.optimizer_gbs(), "; expected 0 (= memory_gbs) or a positive number"));
  }
  if (!(s.memory_reserved_gib() >= 0 && s.memory_reserved_gib() < s.memory_gib())) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": memory_reserved_gib = ", s.memory_reserved_gib(),
                                                   "; expected at least 0 and less than memory_gib = ", s.memory_gib()));
  }
  for (auto [field, v] : {std::pair{"intra_node_latency_us", s.intra_node_latency_us()},
                          {"inter_node_latency_us", s.inter_node_latency_us()},
                          {"intra_node_reduce_gbs", s.intra_node_reduce_gbs()},
                          {"cores_per_node", double(s.cores_per_node())}}) {
    if (!(v >= 0)) return absl::InvalidArgumentError(absl::StrCat(source, ": ", field, " = ", v, "; expected >= 0"));
  }
  return absl::OkStatus();
}

// Seconds of the fastest of `reps` calls of fn. A fixed count, not a time budget: fn is a
// collective or a transfer, and every rank must make the same calls.
template <typename Fn>
double best_seconds(Fn&& fn, int reps) {
  using Clock = std::chrono::steady_clock;
  double best = 1e30;
  for (int i = 0; i < reps; ++i) {
    const auto t0 = Clock::now();
    fn();
    best = std::min(best, std::chrono::duration<double>(Clock::now() - t0).count());
  }
  return best;
}

}  // namespace

absl::StatusOr<Hardware> hardware_parse(const std::string& text, const std::string& source) {
  Hardware hw;
  hw.source = source;
  if (absl::Status s = textproto_parse(text, source, &hw.spec); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("cannot parse hardware description:\n", s.message()));
  }
  CMOE_RETURN_IF_ERROR(check_spec(hw.spec, source));
  return hw;
}

std::string hardware_to_text(const Hardware& hw) {
  std::string text;
  pb::TextFormat::PrintToString(hw.spec, &text);
  return absl::StrCat("# ", hw.source, "\n", text);
}

absl::StatusOr<Hardware> hardware_load(const std::string& name, parallel::Communicator* world) {
  if (name == "cpu") return hardware_measure_cpu(world);
  for (const BuiltinHardware& b : kBuiltinHardware) {
    if (name == b.name) return hardware_parse(b.text, absl::StrCat("built-in ", b.name, " (configs/hardware/", b.name, ".textproto)"));
  }
  std::ifstream in(name, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(absl::StrCat("--hardware ", name, ": not a built-in name (",
                                            absl::StrJoin(hardware_names(), ", "), ") and no such file"));
  }
  std::stringstream ss;
  ss << in.rdbuf();
  return hardware_parse(ss.str(), name);
}

absl::StatusOr<Hardware> hardware_measure_cpu(parallel::Communicator* world) {
  const int ranks = world == nullptr ? 1 : world->size();
  const int me = world == nullptr ? 0 : world->rank();
  const int cores = std::max(1, omp_get_num_procs());
  config::HardwareSpec s;
  s.set_name("cpu");
  s.set_cores_per_node(cores);
  s.set_devices_per_node(std::max(cores, ranks));
  s.set_mfu(0.7);
  s.set_overlap_grad_reduce(false);
  s.set_memory_gib(double(sysconf(_SC_PHYS_PAGES)) * double(sysconf(_SC_PAGE_SIZE)) / double(int64_t{1} << 30));
  s.set_memory_reserved_gib(0.5);  // the process itself, MPI's shared-memory segments
  // Rank 0 measures the node with every core while the others sleep in a barrier (spinning in
  // MPI would take a core from the measurement).
  double values[6] = {0, 0, 0, 0, 0, 0};  // bf16 TF, f32 TF, mem GB/s, p2p GB/s, reduce GB/s, latency us
  if (me == 0) {
    const int threads = omp_get_max_threads();
    omp_set_num_threads(cores);
    values[0] = ops::matmul_peak_gflops(DType::kBF16) * 1e-3;
    values[1] = ops::matmul_peak_gflops(DType::kF32) * 1e-3;
    values[2] = ops::memory_bandwidth_gbs();
    omp_set_num_threads(threads);
  }
  if (world != nullptr && ranks > 1) CMOE_RETURN_IF_ERROR(parallel::sleeping_barrier(*world));
  std::string link = "estimated as half the memory bandwidth (one process; start under mpirun -np 2 to measure)";
  if (ranks >= 2) {
    // Send/recv between ranks 0 and 1 (a ping-pong of 32 MiB), all-reduce bus bandwidth of
    // 32 MiB over the world, and the latency of an 8-byte all-reduce.
    constexpr int64_t kFloats = int64_t{8} << 20;
    Tensor a = Tensor::full({kFloats}, 1.0f), b = Tensor::full({kFloats}, 0.0f);
    absl::Status st;
    auto ping = [&] {
      if (me > 1) return;
      parallel::P2POp send{parallel::P2POp::kSend, a, 1 - me, 7}, recv{parallel::P2POp::kRecv, b, 1 - me, 7};
      if (me == 0) {
        st.Update(world->batch_p2p({&send, 1}));
        st.Update(world->batch_p2p({&recv, 1}));
      } else {
        st.Update(world->batch_p2p({&recv, 1}));
        st.Update(world->batch_p2p({&send, 1}));
      }
    };
    CMOE_RETURN_IF_ERROR(world->barrier());
    const double rtt = best_seconds(ping, 10);
    CMOE_RETURN_IF_ERROR(world->barrier());
    const double reduce_s = best_seconds([&] { st.Update(world->all_reduce(a)); }, 8);
    Tensor tiny = Tensor::full({2}, 1.0f);
    const double latency_s = best_seconds([&] { st.Update(world->all_reduce(tiny)); }, 200);
    CMOE_RETURN_IF_ERROR(st);
    if (me == 0) {
      const double bytes = double(kFloats) * sizeof(float);
      values[3] = bytes / (rtt / 2) * 1e-9;
      values[4] = 2.0 * (ranks - 1) / ranks * bytes / reduce_s * 1e-9;
      values[5] = latency_s * 1e6;
    }
    link = absl::StrFormat("measured over %d ranks: send/recv between ranks 0 and 1, all-reduce bus bandwidth, 8-byte all-reduce latency",
                           ranks);
  }
  if (world != nullptr && ranks > 1) {
    Tensor t = Tensor::empty({6}, DType::kF32);
    for (int i = 0; i < 6; ++i) t.data<float>()[i] = static_cast<float>(values[i]);
    CMOE_RETURN_IF_ERROR(world->broadcast(t, 0));
    for (int i = 0; i < 6; ++i) values[i] = t.data<float>()[i];
  }
  s.set_peak_tflops_bf16(values[0]);
  s.set_peak_tflops_f32(values[1]);
  s.set_memory_gbs(values[2]);
  if (ranks >= 2) {
    s.set_intra_node_gbs(values[3]);
    s.set_intra_node_reduce_gbs(values[4]);
    s.set_intra_node_latency_us(values[5]);
  } else {
    s.set_intra_node_gbs(values[2] / 2);
    s.set_intra_node_latency_us(5);
  }
  // One node: nothing crosses a network; the field is set so layouts over several "nodes" of
  // this machine can still be asked about (a 10 Gb/s link).
  s.set_inter_node_gbs(1.25);
  s.set_inter_node_latency_us(50);
  s.set_description(absl::StrFormat(
      "this machine, %d cores, measured: matmul peak %.3g TFLOP/s bf16 / %.3g f32, memory %.3g GB/s; link %s", cores,
      values[0], values[1], values[2], link));
  Hardware hw;
  hw.spec = s;
  hw.source = "measured on this machine";
  CMOE_RETURN_IF_ERROR(check_spec(hw.spec, hw.source));
  return hw;
}

}  // namespace cmoe
