// multi_tensor.h — multi-tensor launches for the optimizer step on CUDA: AdamW over a list of
// parameters in one kernel, and the squared norms of a list of gradients in one kernel.
//
// The tensors are cut into chunks of at most cuda_geom::kMultiTensorChunk elements (one block
// each); the chunk list and the tensors' addresses travel to the device in one copy per call.
// multi_tensor_chunks is the host logic, unit-tested on the CPU (tests/cuda/multi_tensor_test.cpp).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "core/tensor.h"

namespace cmoe::cuda {

struct ChunkList {
  std::vector<int64_t> tensor, start, len;  // chunk c: elements [start, start + len) of tensor
  int64_t size() const { return static_cast<int64_t>(tensor.size()); }
};

// The chunks of tensors of the given sizes, tensor by tensor in order; empty tensors get none.
ChunkList multi_tensor_chunks(std::span<const int64_t> numels);

struct AdamWStep {
  float beta1, beta2, eps;
  float step_size;      // lr / (1 - beta1^t)
  float inv_sqrt_bc2;   // 1 / sqrt(1 - beta2^t)
  float grad_scale;     // clipping factor
};

// For every i: AdamW on params[i] with moments exp_avg[i], exp_avg_sq[i], gradient grads[i] and
// weight-decay factor decay_mul[i] (optimizer.h's formula). All f32 on one CUDA device, each
// moment and gradient the shape of its parameter.
void adamw_multi(std::span<const Tensor> params, std::span<const Tensor> exp_avg, std::span<const Tensor> exp_avg_sq,
                 std::span<const Tensor> grads, std::span<const float> decay_mul, const AdamWStep& step);

// sum of squares of each tensor (f64), f32 tensors on one CUDA device; one copy back to the host.
std::vector<double> sum_squares_multi(std::span<const Tensor> xs);

}  // namespace cmoe::cuda
