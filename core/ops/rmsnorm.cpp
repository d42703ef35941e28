// PLACEHOLDER (development only): replaced by the real implementation.
#include "core/ops/rmsnorm.h"

namespace cmoe::ops {
void rmsnorm_forward(Tensor& /*out*/, Tensor& /*rstd*/, const Tensor& /*x*/, const Tensor& /*w*/, float /*eps*/) { CMOE_CHECK(false, "not implemented"); }
void rmsnorm_backward(Tensor& /*dx*/, Tensor& /*dw*/, const Tensor& /*dout*/, const Tensor& /*x*/, const Tensor& /*w*/, const Tensor& /*rstd*/) { CMOE_CHECK(false, "not implemented"); }
}  // namespace cmoe::ops
