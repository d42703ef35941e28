// PLACEHOLDER (development only): replaced by the real implementation.
#include "core/ops/linear.h"

namespace cmoe::ops {
void linear_forward(Tensor& /*out*/, const Tensor& /*x*/, const Tensor& /*w*/, DType /*compute_dtype*/) { CMOE_CHECK(false, "not implemented"); }
void linear_backward(Tensor& /*dx*/, Tensor& /*dw*/, const Tensor& /*dout*/, const Tensor& /*x*/, const Tensor& /*w*/, DType /*compute_dtype*/) { CMOE_CHECK(false, "not implemented"); }
void grouped_linear_forward(Tensor& /*out*/, const Tensor& /*x*/, const Tensor& /*w*/, std::span<const int64_t> /*offsets*/, DType /*compute_dtype*/) { CMOE_CHECK(false, "not implemented"); }
void grouped_linear_backward(Tensor& /*dx*/, Tensor& /*dw*/, const Tensor& /*dout*/, const Tensor& /*x*/, const Tensor& /*w*/, std::span<const int64_t> /*offsets*/, DType /*compute_dtype*/) { CMOE_CHECK(false, "not implemented"); }
}  // namespace cmoe::ops
