// op_table.cpp — the columns and rows of the op table (see op_table.h). Adding an op: its
// kernels in core/ops (CPU) and core/cuda (CUDA), one X line in op_table.h, its function in
// autograd/ops.h, its gradient check in the op harness. A column missing an entry does not
// compile (designated initialisers name every field) or fails the harness (a null entry).
#include "autograd/op_table.h"

#include <iterator>

#include "core/cuda/kernels.h"

namespace cmoe::ag {

namespace {

#define CMOE_OP_COLUMN_(op) .op##_forward = &NS::op##_forward, .op##_backward = &NS::op##_backward,
#define CMOE_KERNEL_COLUMN_(k) .k = &NS::k,

#define NS ops
const OpKernels kCpu = {CMOE_DIFF_OPS(CMOE_OP_COLUMN_) CMOE_PLAIN_KERNELS(CMOE_KERNEL_COLUMN_)};
#undef NS
#define NS cuda
const OpKernels kCuda = {CMOE_DIFF_OPS(CMOE_OP_COLUMN_) CMOE_PLAIN_KERNELS(CMOE_KERNEL_COLUMN_)};
#undef NS

#define CMOE_FN_(f) reinterpret_cast<AnyFn>(f)
#define CMOE_OP_ROW_(op)                                                                       \
  {#op, true, CMOE_FN_(kCpu.op##_forward), CMOE_FN_(kCpu.op##_backward),                      \
   CMOE_FN_(kCuda.op##_forward), CMOE_FN_(kCuda.op##_backward)},
#define CMOE_KERNEL_ROW_(k) {#k, false, CMOE_FN_(kCpu.k), nullptr, CMOE_FN_(kCuda.k), nullptr},

const OpInfo kOps[] = {CMOE_DIFF_OPS(CMOE_OP_ROW_) CMOE_PLAIN_KERNELS(CMOE_KERNEL_ROW_)};
static_assert(std::size(kOps) == kNumOps, "op table and kNumOps disagree");

#define CMOE_COUNT_(x) +1
static_assert(0 CMOE_DIFF_OPS(CMOE_COUNT_) == kNumDiffOps, "CMOE_DIFF_OPS and kNumDiffOps disagree");
static_assert(0 CMOE_PLAIN_KERNELS(CMOE_COUNT_) == kNumPlainKernels,
              "CMOE_PLAIN_KERNELS and kNumPlainKernels disagree");

#undef CMOE_COUNT_
#undef CMOE_KERNEL_ROW_
#undef CMOE_OP_ROW_
#undef CMOE_FN_
#undef CMOE_KERNEL_COLUMN_
#undef CMOE_OP_COLUMN_

}  // namespace

const OpKernels& cpu_kernels() { return kCpu; }
const OpKernels& cuda_kernels() { return kCuda; }
std::span<const OpInfo> op_table() { return kOps; }

}  // namespace cmoe::ag
