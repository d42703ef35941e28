// comm_fault.cpp — a job with one misbehaving rank, for the failure-handling tests
// (tests/parallel/expect_job_fails.cmake runs it under mpirun and checks that the whole job
// exits promptly, non-zero, with a message naming the rank and the operation).
//
//   comm_fault stall   rank 1 sleeps; the others' all_reduce hits CMOE_COMM_TIMEOUT_S
//   comm_fault p2p     rank 1 sleeps; rank 0's recv from it hits the timeout
//   comm_fault abort   rank 1 calls abort_job; the others wait in a barrier (timeout 300 s)
//   comm_fault die     rank 1 kills itself (SIGKILL); the others wait in an all_reduce (300 s)
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

#include "parallel/backend/mpi.h"

using namespace cmoe;
using namespace cmoe::parallel;

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: comm_fault stall|p2p|abort|die\n");
    return 2;
  }
  const std::string mode = argv[1];
  absl::Status s = mpi_init(&argc, &argv);
  if (!s.ok()) abort_job(s);
  auto world = MpiCommunicator::world();
  if (!world.ok()) abort_job(world.status());
  MpiCommunicator& c = **world;
  // Everyone is up before the fault, so the tests time the failure path, not start-up.
  if (!c.barrier().ok()) abort_job(absl::InternalError("start-up barrier failed"));
  const bool faulty = c.rank() == 1;
  Tensor t = Tensor::full({4}, 1.0f);
  if (mode == "stall" || mode == "p2p") {
    if (faulty) {
      sleep(60);
      return 0;
    }
    if (mode == "stall") {
      s = c.all_reduce(t);
    } else if (c.rank() == 0) {
      s = c.recv(t, 1, 5);
    } else {
      c.set_timeout_s(30);  // so that rank 0's recv is the operation that times out
      s = c.barrier();
    }
  } else if (mode == "abort" || mode == "die") {
    c.set_timeout_s(300);
    if (faulty) {
      if (mode == "abort") abort_job(absl::InternalError("injected failure on purpose"));
      std::fprintf(stderr, "comm_fault: world rank 1 sending itself SIGKILL\n");
      std::fflush(stderr);
      kill(getpid(), SIGKILL);
    }
    s = mode == "abort" ? c.barrier() : c.all_reduce(t);
  } else {
    std::fprintf(stderr, "comm_fault: unknown mode '%s'\n", mode.c_str());
    return 2;
  }
  // Reaching here means the fault was not detected.
  std::fprintf(stderr, "comm_fault: world rank %d finished '%s' with %s — the fault went unnoticed\n",
               c.rank(), mode.c_str(), s.ToString().c_str());
  return 0;
}
