// op_table.cpp — rows of the op table (see op_table.h). Adding an op: one row here, its
// kernels in core/ops, its function in autograd/ops.h, its gradient check in the op harness.
#include "autograd/op_table.h"

#include <iterator>

#include "core/ops/attention.h"
#include "core/ops/cross_entropy.h"
#include "core/ops/elementwise.h"
#include "core/ops/embedding.h"
#include "core/ops/linear.h"
#include "core/ops/permute.h"
#include "core/ops/rmsnorm.h"
#include "core/ops/rope.h"
#include "core/ops/softmax.h"
#include "core/ops/swiglu.h"

namespace cmoe::ag {

namespace {
#define CMOE_FN(f) reinterpret_cast<AnyFn>(&f)
#define CMOE_CPU_OP(name) {#name, CMOE_FN(ops::name##_forward), CMOE_FN(ops::name##_backward), nullptr, nullptr}

const OpInfo kOps[] = {
    CMOE_CPU_OP(add),
    CMOE_CPU_OP(mul),
    CMOE_CPU_OP(scale),
    CMOE_CPU_OP(scale_rows),
    CMOE_CPU_OP(add_bias),
    CMOE_CPU_OP(sum),
    CMOE_CPU_OP(embedding),
    CMOE_CPU_OP(linear),
    CMOE_CPU_OP(grouped_linear),
    CMOE_CPU_OP(rmsnorm),
    CMOE_CPU_OP(rope),
    CMOE_CPU_OP(attention),
    CMOE_CPU_OP(swiglu),
    CMOE_CPU_OP(softmax),
    CMOE_CPU_OP(topk),
    CMOE_CPU_OP(gather_rows),
    CMOE_CPU_OP(scatter_add_rows),
    CMOE_CPU_OP(cross_entropy),
};
static_assert(std::size(kOps) == kNumOps, "op table and kNumOps disagree");

#undef CMOE_CPU_OP
#undef CMOE_FN
}  // namespace

std::span<const OpInfo> op_table() { return kOps; }

}  // namespace cmoe::ag
