// comm_factory.h — the pure decisions behind make_communicator (communicator.h), apart so they
// are unit-tested on the CPU (tests/parallel/comm_factory_test.cpp).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>

namespace cmoe::parallel {

// The local rank the launcher exported: OMPI_COMM_WORLD_LOCAL_RANK (Open MPI), SLURM_LOCALID
// (srun), MPI_LOCALRANKID (MPICH / Intel MPI), first set and valid wins; nullopt when none is.
// getenv: the environment lookup (std::getenv in production).
std::optional<int> local_rank_from_env(const std::function<const char*(const char*)>& getenv);

// True when two ranks' (host, GPU) pairs coincide: host_ids[r] identifies rank r's host,
// devices[r] its GPU index there. NCCL cannot put two ranks of one communicator on one GPU.
bool ranks_share_a_gpu(std::span<const int64_t> host_ids, std::span<const int64_t> devices);

// The backend of a communicator, for messages: "mpi", "nccl", "staged" or "local".
class Communicator;
std::string comm_backend_name(const Communicator& c);

// CMOE_GPU_COMM's value: "" / "auto", "nccl" or "staged"; anything else is an error naming it.
enum class GpuCommChoice { kAuto, kNccl, kStaged };
bool parse_gpu_comm(const std::string& value, GpuCommChoice* out);

}  // namespace cmoe::parallel
