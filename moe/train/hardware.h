// hardware.h — machine descriptions for the layout planner (moe/train/plan.h): the built-in
// ones (configs/hardware/*.textproto, compiled in), any description file, or this machine
// measured as one CPU node ("cpu"). Fields and units: moe/train/hardware.proto.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/dtype.h"
#include "moe/train/hardware.pb.h"
#include "parallel/communicator.h"

namespace cmoe {

struct Hardware {
  config::HardwareSpec spec;
  std::string source;  // "built-in h100", a file path, or "measured on this machine ..."

  // In SI units.
  double peak_flops(DType compute) const;  // FLOP/s of a device (shared CPU node: of the node)
  double usable_memory_bytes() const;      // memory_gib - memory_reserved_gib
  double memory_bytes_per_s() const { return spec.memory_gbs() * 1e9; }
  bool shared_node() const { return spec.cores_per_node() > 0; }
};

// The built-in names (h100, h200, a100) and "cpu".
std::vector<std::string> hardware_names();

// Parses a description (protobuf text format); `source` names it in messages. Checks that the
// peaks, memory and bandwidths are positive and mfu is in (0, 1].
absl::StatusOr<Hardware> hardware_parse(const std::string& text, const std::string& source);

// The description as a file hardware_load reads back (protobuf text format, a comment line
// naming its source first): `cmoe plan --hardware cpu --write-hardware F` measures once.
std::string hardware_to_text(const Hardware& hw);

// `name`: a built-in name, "cpu" (hardware_measure_cpu), or the path of a description file.
// world: the job's communicator, for "cpu" (may be null: one process).
absl::StatusOr<Hardware> hardware_load(const std::string& name, parallel::Communicator* world);

// This machine as one node: the dense matmul peaks (ops::matmul_peak_gflops) and memory
// bandwidth (ops::memory_bandwidth_gbs) measured with all its cores, its RAM, and mfu 0.7
// (cmoe's f32 training step on cpu-small reaches 66-69% of the measured peak with its
// optimizer and bookkeeping included, docs/benchmarks.md; its forward and backward a little
// more). The link between ranks: when `world` has two or more ranks (started
// under mpirun; every rank calls), the send/recv bandwidth between ranks 0 and 1, the bus
// bandwidth of an all-reduce over the world and the latency of a small all-reduce are
// measured; on one process the link is estimated as half the memory bandwidth (a
// shared-memory transfer reads and writes every byte once) and said so in `source`.
// Takes about two seconds.
absl::StatusOr<Hardware> hardware_measure_cpu(parallel::Communicator* world);

}  // namespace cmoe
