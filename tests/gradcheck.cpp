// gradcheck.cpp — see gradcheck.h.
#include "tests/gradcheck.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"

namespace cmoe::testing {

Tensor random_tensor(const Shape& shape, uint64_t stream, float scale) {
  Tensor t = Tensor::empty(shape, DType::kF32);
  rng_fill_normal(t, 0.0f, scale, /*seed=*/1234, stream);
  return t;
}

namespace {
double projected(const ag::Var& out, const Tensor& r) {
  std::vector<float> o = out.value().to_floats(), w = r.to_floats();
  double s = 0;
  for (size_t i = 0; i < o.size(); ++i) s += static_cast<double>(o[i]) * w[i];
  return s;
}
}  // namespace

std::string grad_check(const std::function<ag::Var(const std::vector<ag::Var>&)>& fn,
                       const std::vector<Tensor>& inputs, const std::vector<bool>& differentiable,
                       const GradCheckOptions& opt) {
  std::vector<ag::Var> vars;
  for (size_t i = 0; i < inputs.size(); ++i) vars.emplace_back(inputs[i].clone(), differentiable[i]);
  ag::Var out = fn(vars);
  Tensor r = random_tensor(out.shape(), /*stream=*/999);
  ag::Var loss = ag::sum(ag::mul(out, ag::Var(r)));
  ag::backward(loss);

  for (size_t i = 0; i < inputs.size(); ++i) {
    if (!differentiable[i]) continue;
    if (!vars[i].grad().defined()) return absl::StrCat("input ", i, ": no gradient arrived");
    std::vector<float> analytic = vars[i].grad().to_floats();
    const int64_t n = inputs[i].numel();
    const int64_t step = std::max<int64_t>(1, n / opt.max_elems);
    std::vector<double> numeric, got;
    for (int64_t e = 0; e < n; e += step) {
      std::vector<ag::Var> pv;
      double lp, lm;
      {
        ag::NoGradGuard ng;
        for (size_t j = 0; j < inputs.size(); ++j) pv.emplace_back(inputs[j].clone());
        float* p = pv[i].mutable_value().data<float>();
        const float x0 = p[e];
        p[e] = x0 + opt.eps;
        lp = projected(fn(pv), r);
        p[e] = x0 - opt.eps;
        lm = projected(fn(pv), r);
      }
      numeric.push_back((lp - lm) / (2.0 * opt.eps));
      got.push_back(analytic[e]);
    }
    double scale = 0;
    for (double v : numeric) scale = std::max(scale, std::abs(v));
    for (size_t k = 0; k < numeric.size(); ++k) {
      double err = std::abs(got[k] - numeric[k]);
      if (err > opt.atol + opt.rtol * scale) {
        return absl::StrCat("input ", i, " element ", static_cast<int64_t>(k) * step, ": autograd ",
                            got[k], " vs finite difference ", numeric[k], " (tolerance ",
                            opt.atol + opt.rtol * scale, ")");
      }
    }
  }
  return "";
}

}  // namespace cmoe::testing

namespace cmoe::testing {
std::vector<std::pair<std::string, GradCheckCase>>& gradcheck_registry() {
  static std::vector<std::pair<std::string, GradCheckCase>> r;
  return r;
}
}  // namespace cmoe::testing
