// PLACEHOLDER (development only): replaced by the real implementation.
#include "core/ops/permute.h"

namespace cmoe::ops {
void gather_rows_forward(Tensor& /*out*/, const Tensor& /*x*/, const Tensor& /*idx*/) { CMOE_CHECK(false, "not implemented"); }
void gather_rows_backward(Tensor& /*dx*/, const Tensor& /*dout*/, const Tensor& /*idx*/) { CMOE_CHECK(false, "not implemented"); }
void scatter_add_rows_forward(Tensor& /*out*/, const Tensor& /*y*/, const Tensor& /*idx*/, const Tensor& /*w*/) { CMOE_CHECK(false, "not implemented"); }
void scatter_add_rows_backward(Tensor& /*dy*/, Tensor& /*dw*/, const Tensor& /*dout*/, const Tensor& /*y*/, const Tensor& /*idx*/, const Tensor& /*w*/) { CMOE_CHECK(false, "not implemented"); }
}  // namespace cmoe::ops
