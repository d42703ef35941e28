// adapter_util.h — argument checks shared by the CUDA column's adapters (core/cuda/ops_*.cpp).
// Internal to core/cuda.
#pragma once

#include "core/check.h"
#include "core/cuda/context.h"
#include "core/tensor.h"

namespace cmoe::cuda::detail {

// t is defined, of dtype `dt`, on `dev` (a CUDA device).
inline void expect(const Tensor& t, DType dt, Device dev, const char* op, const char* what) {
  CMOE_CHECK(t.defined() && t.dtype() == dt && t.device() == dev && dev.is_cuda(), op, ": ", what, " is ",
             t.str(), ", want ", dtype_name(dt), " on ", dev.str());
}

// The device of an op's first tensor, made current; CUDA only.
inline Device device_of(const Tensor& t, const char* op) {
  CMOE_CHECK(t.defined() && t.device().is_cuda(), op, ": ", t.str(), " is not a CUDA tensor");
  use_device(t.device());
  return t.device();
}

inline float* f32(const Tensor& t) { return t.defined() ? t.data<float>() : nullptr; }
inline const int32_t* i32(const Tensor& t) { return t.defined() ? t.data<int32_t>() : nullptr; }

}  // namespace cmoe::cuda::detail
