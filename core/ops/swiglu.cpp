// PLACEHOLDER (development only): replaced by the real implementation.
#include "core/ops/swiglu.h"

namespace cmoe::ops {
void swiglu_forward(Tensor& /*out*/, const Tensor& /*gate*/, const Tensor& /*up*/) { CMOE_CHECK(false, "not implemented"); }
void swiglu_backward(Tensor& /*dgate*/, Tensor& /*dup*/, const Tensor& /*dout*/, const Tensor& /*gate*/, const Tensor& /*up*/) { CMOE_CHECK(false, "not implemented"); }
}  // namespace cmoe::ops
