// context.h — where the op table's CUDA column runs: the compute stream, the current device, the
// device's cuBLAS handle, and scratch from the caching allocator.
//
// One in-order compute stream per device — the legacy default stream — carries every kernel,
// cuBLAS call and host<->device copy of a training step. That keeps the caching allocator's
// immediate reuse of freed blocks safe (caching_allocator.h) and orders kernels with the
// synchronous copies of Tensor::to / copy_from without events. Communication runs on each NCCL
// communicator's own stream, ordered after the compute stream by an event (parallel/backend/
// nccl.h), so gradient all-reduces overlap the rest of the backward pass.
#pragma once

#include <cstdint>

#include "core/cuda/blas.h"
#include "core/cuda/stream.h"
#include "core/tensor.h"

namespace cmoe::cuda {

// The stream every adapter queues on.
inline StreamHandle compute_stream() { return kLegacyStream; }

// Makes `device`'s GPU current for this thread's launches (a no-op when it already is). The
// adapters call it with their output's device; a rank drives one GPU, so this rarely switches.
void use_device(Device device);

// The cuBLAS handle of `device` on the compute stream, created on first use (one per device and
// thread; never destroyed, like the caching allocator, since the CUDA runtime may be gone first).
const BlasHandle& blas(Device device);

// `bytes` bytes of device scratch on `device`, from the caching allocator (a tensor owning it;
// keep it alive until the kernels using it are queued — later kernels on the compute stream may
// reuse the block only after them).
Tensor scratch(Device device, size_t bytes);

// A plugin entry's code: anything but OK aborts naming `what` (a kernel or cuBLAS call failing
// is a bug or a broken device, not user input).
void check(int32_t code, const char* what);

// The loaded plugin's table (adapters run only on CUDA tensors, so it is loaded).
const CmoeCudaApi& api();

// Blocks until the compute stream of `device` has finished (timing, benchmarks); a kernel fault
// is fatal here, naming the stream.
void synchronize(Device device);

// The dense cuBLAS matmul throughput of `device` for inputs of `dtype` (f32 or bf16, f32
// accumulation), in GFLOP/s: the best of repeated (8192 x 8192 x 8192 bf16, 4096^3 f32) products
// over ~0.3 s, measured on the first call per (device, dtype) and kept. MFU on a GPU is reported
// against it (docs/metrics.md), as the CPU's against ops::matmul_peak_gflops.
double matmul_peak_gflops(Device device, DType dtype);

}  // namespace cmoe::cuda
