// op_table.h — the one table of ops and their kernels per backend: the per-device dispatch.
//
// Every differentiable op of autograd/ops.h (but the kernel-free reshape) is a row with a forward
// and a backward kernel on each backend; the router's and dispatcher's non-differentiable
// kernels are rows with a forward only. A backend is a column: an OpKernels struct with one
// typed pointer per kernel, whose signatures are those of the CPU kernels in core/ops (the
// reference). autograd's ops and the model family call `kernels(device)` for their tensors'
// device, so adding a backend is filling a column; the CUDA column holds the checked adapters of
// core/cuda/kernels.h, which queue the plugin's kernels.
//
// The test suite walks this table: every row has every backend's kernels (a missing one fails
// to build or fails op_harness_test), every differentiable row has a gradient check, and the
// CUDA op harness (tests/cuda/cuda_op_harness_test.cpp) runs every row on CUDA against the CPU.
#pragma once

#include <span>

#include "core/ops/attention.h"
#include "core/ops/cross_entropy.h"
#include "core/ops/elementwise.h"
#include "core/ops/embedding.h"
#include "core/ops/linear.h"
#include "core/ops/permute.h"
#include "core/ops/rmsnorm.h"
#include "core/ops/rope.h"
#include "core/ops/routing.h"
#include "core/ops/softmax.h"
#include "core/ops/swiglu.h"

namespace cmoe::ag {

// X(name): the differentiable ops, each with name##_forward and name##_backward kernels.
#define CMOE_DIFF_OPS(X) \
  X(add)                 \
  X(mul)                 \
  X(scale)               \
  X(scale_rows)          \
  X(add_bias)            \
  X(sum)                 \
  X(embedding)           \
  X(linear)              \
  X(grouped_linear)      \
  X(rmsnorm)             \
  X(rope)                \
  X(attention)           \
  X(swiglu)              \
  X(softmax)             \
  X(topk)                \
  X(gather_rows)         \
  X(scatter_add_rows)    \
  X(cross_entropy)       \
  X(routing_weights)     \
  X(z_loss)

// X(name): kernels without a backward (rounding to the compute dtype, routing decisions).
#define CMOE_PLAIN_KERNELS(X) \
  X(to_compute)               \
  X(router_topk)              \
  X(router_topp)              \
  X(router_hash)              \
  X(expert_load)              \
  X(dispatch_sort)

// One backend's kernels.
struct OpKernels {
#define CMOE_OP_FIELDS_(op)                    \
  decltype(&ops::op##_forward) op##_forward;   \
  decltype(&ops::op##_backward) op##_backward;
  CMOE_DIFF_OPS(CMOE_OP_FIELDS_)
#undef CMOE_OP_FIELDS_
#define CMOE_KERNEL_FIELD_(k) decltype(&ops::k) k;
  CMOE_PLAIN_KERNELS(CMOE_KERNEL_FIELD_)
#undef CMOE_KERNEL_FIELD_
};

// The columns. cuda_kernels() is available in every build: its adapters load the CUDA backend
// when first called (and abort naming the reason where there is none).
const OpKernels& cpu_kernels();
const OpKernels& cuda_kernels();
// The kernels for tensors on `device`.
inline const OpKernels& kernels(Device device) {
  return device.is_cpu() ? cpu_kernels() : cuda_kernels();
}

// A row of the table, untyped, for walking it (names and presence per backend).
using AnyFn = void (*)();
struct OpInfo {
  const char* name;
  bool differentiable;  // false: a plain kernel (forward only; backward entries are null)
  AnyFn cpu_forward;
  AnyFn cpu_backward;
  AnyFn cuda_forward;
  AnyFn cuda_backward;
};

inline constexpr int kNumDiffOps = 20;
inline constexpr int kNumPlainKernels = 6;
inline constexpr int kNumOps = kNumDiffOps + kNumPlainKernels;
std::span<const OpInfo> op_table();

}  // namespace cmoe::ag
