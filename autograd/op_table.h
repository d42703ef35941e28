// op_table.h — the one table of differentiable ops and their kernels per backend.
//
// Every op of autograd/ops.h (but the kernel-free reshape) has a row naming its forward and
// backward kernels on each backend; nullptr means "not implemented on this backend". The
// test suite walks this table: every op must have a CPU forward and backward and a gradient
// check registered under its name (tests/op_harness_test.cpp), and the CUDA column is reported.
#pragma once

#include <span>

namespace cmoe::ag {

using AnyFn = void (*)();

struct OpInfo {
  const char* name;
  AnyFn cpu_forward;
  AnyFn cpu_backward;
  AnyFn cuda_forward;
  AnyFn cuda_backward;
};

inline constexpr int kNumOps = 18;
std::span<const OpInfo> op_table();

}  // namespace cmoe::ag
