// gradcheck.h — the op harness's gradient checker: autograd gradients against central finite
// differences, in f64 arithmetic on f32 inputs.
//
// The checked scalar is L = sum_i out[i] * r[i] with a fixed random projection r, so every
// output element contributes with its own weight (a plain sum would hide sign and
// permutation bugs). Each input element that is checked is perturbed by +-eps and L is
// re-evaluated without the tape.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "autograd/ops.h"
#include "core/rng.h"

namespace cmoe::testing {

struct GradCheckOptions {
  float eps = 1e-2f;      // finite-difference step
  double rtol = 2e-2;     // |analytic - numeric| <= atol + rtol * max(|numeric|) over the tensor
  double atol = 2e-3;
  int max_elems = 64;     // elements checked per input (spread evenly)
};

// Returns "" on success, or a message naming the input, element and both values.
std::string grad_check(const std::function<ag::Var(const std::vector<ag::Var>&)>& fn,
                       const std::vector<Tensor>& inputs, const std::vector<bool>& differentiable,
                       const GradCheckOptions& opt = {});

// A random f32 tensor from the Philox stream `stream` (deterministic across runs).
Tensor random_tensor(const Shape& shape, uint64_t stream, float scale = 1.0f);

}  // namespace cmoe::testing

namespace cmoe::testing {

// Gradient-check cases by op-table name. Each op's test file registers at least one case with
// CMOE_GRADCHECK(op_name) { return grad_check(...); }; the op harness runs every case and
// fails any op-table row that has none.
using GradCheckCase = std::function<std::string()>;
std::vector<std::pair<std::string, GradCheckCase>>& gradcheck_registry();
struct GradCheckRegistration {
  GradCheckRegistration(const char* op_name, GradCheckCase c) {
    gradcheck_registry().emplace_back(op_name, std::move(c));
  }
};

}  // namespace cmoe::testing

#define CMOE_GRADCHECK_CAT2_(a, b) a##b
#define CMOE_GRADCHECK_CAT_(a, b) CMOE_GRADCHECK_CAT2_(a, b)
// CMOE_GRADCHECK(rmsnorm) { ... return grad_check(...); }
#define CMOE_GRADCHECK(op)                                                                  \
  static std::string CMOE_GRADCHECK_CAT_(gradcheck_fn_, __LINE__)();                        \
  static ::cmoe::testing::GradCheckRegistration CMOE_GRADCHECK_CAT_(gradcheck_reg_, __LINE__)( \
      #op, &CMOE_GRADCHECK_CAT_(gradcheck_fn_, __LINE__));                                  \
  static std::string CMOE_GRADCHECK_CAT_(gradcheck_fn_, __LINE__)()
