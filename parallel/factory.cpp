// factory.cpp — make_communicator, the one factory of communicator backends (communicator.h), and
// the pure decisions it rests on (comm_factory.h).
#include <cstdlib>
#include <functional>
#include <vector>

#include "absl/strings/numbers.h"
#include "core/cuda/cuda_backend.h"
#include "core/cuda/plugin_loader.h"
#include "parallel/backend/local.h"
#include "parallel/backend/mpi.h"
#include "parallel/backend/nccl.h"
#include "parallel/comm_factory.h"
#include "parallel/staging.h"

namespace cmoe::parallel {

std::optional<int> local_rank_from_env(const std::function<const char*(const char*)>& getenv) {
  for (const char* var : {"OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID", "MPI_LOCALRANKID"}) {
    const char* v = getenv(var);
    int r = -1;
    if (v != nullptr && absl::SimpleAtoi(v, &r) && r >= 0) return r;
  }
  return std::nullopt;
}

bool ranks_share_a_gpu(std::span<const int64_t> host_ids, std::span<const int64_t> devices) {
  CMOE_CHECK(host_ids.size() == devices.size(), "ranks_share_a_gpu: ", host_ids.size(), " hosts for ",
             devices.size(), " devices");
  for (size_t i = 0; i < host_ids.size(); ++i)
    for (size_t j = i + 1; j < host_ids.size(); ++j)
      if (host_ids[i] == host_ids[j] && devices[i] == devices[j]) return true;
  return false;
}

bool parse_gpu_comm(const std::string& value, GpuCommChoice* out) {
  if (value.empty() || value == "auto") *out = GpuCommChoice::kAuto;
  else if (value == "nccl") *out = GpuCommChoice::kNccl;
  else if (value == "staged") *out = GpuCommChoice::kStaged;
  else return false;
  return true;
}

std::string comm_backend_name(const Communicator& c) {
  if (dynamic_cast<const NcclCommunicator*>(&c) != nullptr) return "nccl";
  if (dynamic_cast<const StagedCommunicator*>(&c) != nullptr) return "staged";
  if (dynamic_cast<const MpiCommunicator*>(&c) != nullptr) return "mpi";
  if (dynamic_cast<const LocalCommunicator*>(&c) != nullptr) return "local";
  return "other";
}

absl::StatusOr<int> local_cuda_device() {
  int local = 0;
  if (std::optional<int> env = local_rank_from_env([](const char* v) { return std::getenv(v); })) {
    local = *env;
  } else if (launched_by_mpi()) {
    // mpi_local_rank is collective: every rank makes the call, GPU or not.
    CMOE_ASSIGN_OR_RETURN(local, mpi_local_rank());
  }
  CMOE_ASSIGN_OR_RETURN(const int n, cuda::device_count());
  return local % n;
}

namespace {

// Whether NCCL can serve a CUDA group over `boot`: agreed on every rank from each rank's (host,
// GPU, plugin has NCCL). Collective over boot.
absl::StatusOr<bool> nccl_usable(Communicator& boot, int device) {
  const bool has_nccl = cuda::loaded_api().has_nccl != 0;
  Tensor mine = Tensor::empty({3}, DType::kI64);  // host id, GPU, has NCCL
  mine.data<int64_t>()[0] = static_cast<int64_t>(std::hash<std::string>()(host_name()) >> 1);
  mine.data<int64_t>()[1] = device;
  mine.data<int64_t>()[2] = has_nccl ? 1 : 0;
  Tensor all = Tensor::empty({boot.size(), 3}, DType::kI64);
  CMOE_RETURN_IF_ERROR(boot.all_gather(all, mine));
  std::vector<int64_t> hosts, devices;
  bool all_nccl = true;
  for (int r = 0; r < boot.size(); ++r) {
    hosts.push_back(all.data<int64_t>()[3 * r]);
    devices.push_back(all.data<int64_t>()[3 * r + 1]);
    all_nccl = all_nccl && all.data<int64_t>()[3 * r + 2] != 0;
  }
  return all_nccl && !ranks_share_a_gpu(hosts, devices);
}

}  // namespace

absl::StatusOr<std::unique_ptr<Communicator>> make_communicator(const CommOptions& o) {
  if (o.device.is_cpu()) {
    if (o.backend != CommBackend::kAuto && o.backend != CommBackend::kHost) {
      return absl::InvalidArgumentError("make_communicator: NCCL and staged communicators move CUDA tensors");
    }
    return make_host_world_communicator();
  }
  if (o.bootstrap == nullptr || !o.bootstrap->device().is_cpu()) {
    return absl::InvalidArgumentError("make_communicator: a CUDA communicator is built over a host bootstrap group");
  }
  Communicator& boot = *o.bootstrap;
  const int device = o.device.index;
  CommBackend backend = o.backend == CommBackend::kHost ? CommBackend::kAuto : o.backend;
  if (backend == CommBackend::kAuto) {
    const char* env = std::getenv("CMOE_GPU_COMM");
    GpuCommChoice choice = GpuCommChoice::kAuto;
    if (!parse_gpu_comm(env != nullptr ? env : "", &choice)) {
      return absl::InvalidArgumentError(
          absl::StrCat("CMOE_GPU_COMM='", env, "': want auto, nccl or staged (docs/cli.md)"));
    }
    backend = choice == GpuCommChoice::kNccl     ? CommBackend::kNccl
              : choice == GpuCommChoice::kStaged ? CommBackend::kStaged
                                                 : CommBackend::kAuto;
  }
  if (backend == CommBackend::kNccl) return make_nccl_communicator(boot, device, o.name);
  // Local set-up first; a failing rank still joins the agreement below (a collective).
  absl::Status local = cuda::init(device);
  Tensor failed = Tensor::from_ints({1}, std::vector<int32_t>{local.ok() ? 0 : 1});
  CMOE_RETURN_IF_ERROR(boot.all_reduce(failed));
  if (failed.data<int32_t>()[0] > 0) {
    return absl::Status(local.ok() ? absl::StatusCode::kFailedPrecondition : local.code(),
                        absl::StrCat("GPU communicator '", o.name, "': ", failed.data<int32_t>()[0], " of ",
                                     boot.size(), " ranks could not set up their GPU; world rank ", boot.world_rank(),
                                     " (CUDA device ", device, "): ", local.ok() ? "ok" : local.message()));
  }
  if (boot.size() == 1) {
    return std::unique_ptr<Communicator>(std::make_unique<LocalCommunicator>(o.name, cuda_device(device)));
  }
  if (backend == CommBackend::kAuto) {
    CMOE_ASSIGN_OR_RETURN(const bool nccl, nccl_usable(boot, device));
    if (nccl) return make_nccl_communicator(boot, device, o.name);
  }
  CMOE_ASSIGN_OR_RETURN(std::unique_ptr<Communicator> host, boot.split(0, boot.rank(), o.name));
  return std::unique_ptr<Communicator>(std::make_unique<StagedCommunicator>(std::move(host), cuda_device(device)));
}

absl::StatusOr<std::unique_ptr<Communicator>> make_world_communicator() { return make_communicator({}); }

absl::StatusOr<std::unique_ptr<Communicator>> make_gpu_communicator(Communicator& bootstrap, const std::string& name) {
  // A rank whose device lookup failed still takes part in the NCCL set-up's agreement step.
  const absl::StatusOr<int> device = local_cuda_device();
  return make_nccl_communicator(bootstrap, device, name);
}

}  // namespace cmoe::parallel
