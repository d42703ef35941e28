// PLACEHOLDER (development only): replaced by the real implementation.
#include "core/ops/matmul.h"

namespace cmoe::ops {
void matmul(Tensor& /*c*/, const Tensor& /*a*/, const Tensor& /*b*/, bool /*trans_a*/, bool /*trans_b*/, float /*alpha*/, float /*beta*/) { CMOE_CHECK(false, "not implemented"); }
void grouped_matmul(Tensor& /*c*/, const Tensor& /*a*/, const Tensor& /*w*/, std::span<const int64_t> /*offsets*/, bool /*trans_w*/) { CMOE_CHECK(false, "not implemented"); }
void grouped_matmul_grad_w(Tensor& /*dw*/, const Tensor& /*a*/, const Tensor& /*dc*/, std::span<const int64_t> /*offsets*/, bool /*trans_w*/, bool /*accumulate*/) { CMOE_CHECK(false, "not implemented"); }
}  // namespace cmoe::ops
