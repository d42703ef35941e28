// PLACEHOLDER (development only): replaced by the real implementation.
#include "core/ops/attention.h"

namespace cmoe::ops {
void attention_forward(Tensor& /*out*/, Tensor& /*lse*/, const Tensor& /*q*/, const Tensor& /*k*/, const Tensor& /*v*/, float /*scale*/) { CMOE_CHECK(false, "not implemented"); }
void attention_backward(Tensor& /*dq*/, Tensor& /*dk*/, Tensor& /*dv*/, const Tensor& /*dout*/, const Tensor& /*q*/, const Tensor& /*k*/, const Tensor& /*v*/, const Tensor& /*out*/, const Tensor& /*lse*/, float /*scale*/) { CMOE_CHECK(false, "not implemented"); }
}  // namespace cmoe::ops
