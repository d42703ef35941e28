// PLACEHOLDER (development only): replaced by the real implementation.
#include "core/ops/rope.h"

namespace cmoe::ops {
void rope_forward(Tensor& /*out*/, const Tensor& /*x*/, float /*theta*/, int64_t /*pos0*/) { CMOE_CHECK(false, "not implemented"); }
void rope_backward(Tensor& /*dx*/, const Tensor& /*dout*/, float /*theta*/, int64_t /*pos0*/) { CMOE_CHECK(false, "not implemented"); }
}  // namespace cmoe::ops
