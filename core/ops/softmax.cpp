// PLACEHOLDER (development only): replaced by the real implementation.
#include "core/ops/softmax.h"

namespace cmoe::ops {
void softmax_forward(Tensor& /*out*/, const Tensor& /*x*/) { CMOE_CHECK(false, "not implemented"); }
void softmax_backward(Tensor& /*dx*/, const Tensor& /*dout*/, const Tensor& /*out*/) { CMOE_CHECK(false, "not implemented"); }
void topk_forward(Tensor& /*values*/, Tensor& /*indices*/, const Tensor& /*x*/, int /*k*/, const Tensor& /*mask*/) { CMOE_CHECK(false, "not implemented"); }
void topk_backward(Tensor& /*dx*/, const Tensor& /*dvalues*/, const Tensor& /*indices*/) { CMOE_CHECK(false, "not implemented"); }
}  // namespace cmoe::ops
