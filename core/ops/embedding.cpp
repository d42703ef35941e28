// PLACEHOLDER (development only): replaced by the real implementation.
#include "core/ops/embedding.h"

namespace cmoe::ops {
void embedding_forward(Tensor& /*out*/, const Tensor& /*table*/, const Tensor& /*ids*/) { CMOE_CHECK(false, "not implemented"); }
void embedding_backward(Tensor& /*dtable*/, const Tensor& /*dout*/, const Tensor& /*ids*/) { CMOE_CHECK(false, "not implemented"); }
}  // namespace cmoe::ops
