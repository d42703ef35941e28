// optimizer.cpp — AdamW, gradient norm and LR schedule (see optimizer.h).
#include "moe/optimizer.h"

#include <cmath>

#include "core/ops/elementwise.h"

namespace cmoe {

AdamW::AdamW(std::vector<Param>* params, const AdamWOptions& opt) : params_(params), opt_(opt) {
  for (const Param& p : *params_) {
    m_.push_back(Tensor::zeros(p.var.shape(), DType::kF32));
    v_.push_back(Tensor::zeros(p.var.shape(), DType::kF32));
  }
}

namespace {
__attribute__((target_clones("avx512f", "default")))
void adamw_loop(float* __restrict p, float* __restrict m, float* __restrict v, const float* __restrict g,
                int64_t n, float lr, float b1, float b2, float eps, float decay_mul, float bc1, float bc2,
                float gs) {
  const float step = lr / bc1, inv_sqrt_bc2 = 1.0f / std::sqrt(bc2);
#pragma omp parallel for simd schedule(static) if (n > (1 << 16))
  for (int64_t i = 0; i < n; ++i) {
    const float gi = g[i] * gs;
    const float pi = p[i] * decay_mul;
    const float mi = b1 * m[i] + (1.0f - b1) * gi;
    const float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    p[i] = pi - step * mi / (std::sqrt(vi) * inv_sqrt_bc2 + eps);
  }
}
}  // namespace

void AdamW::step(float lr, float grad_scale) {
  ++t_;
  const float bc1 = 1.0f - std::pow(opt_.beta1, static_cast<float>(t_));
  const float bc2 = 1.0f - std::pow(opt_.beta2, static_cast<float>(t_));
  for (size_t i = 0; i < params_->size(); ++i) {
    Param& p = (*params_)[i];
    const Tensor& g = p.var.grad();
    if (!g.defined()) continue;
    const float decay_mul = p.decay ? 1.0f - lr * opt_.weight_decay : 1.0f;
    adamw_loop(p.var.mutable_value().data<float>(), m_[i].data<float>(), v_[i].data<float>(), g.data<float>(),
               g.numel(), lr, opt_.beta1, opt_.beta2, opt_.eps, decay_mul, bc1, bc2, grad_scale);
  }
}

double grad_global_norm(const std::vector<Param>& params) {
  double s = 0;
  for (const Param& p : params)
    if (p.var.grad().defined()) s += ops::sum_squares(p.var.grad());
  return std::sqrt(s);
}

float lr_at(int64_t step, const config::TrainConfig& t) {
  const double lr = t.lr(), min_lr = t.min_lr();
  const int64_t warmup = t.warmup_steps(), total = t.steps();
  if (step < warmup) return static_cast<float>(lr * (step + 1) / warmup);
  if (total <= warmup) return static_cast<float>(lr);
  const double progress = std::min(1.0, static_cast<double>(step - warmup) / static_cast<double>(total - warmup));
  return static_cast<float>(min_lr + 0.5 * (lr - min_lr) * (1.0 + std::cos(M_PI * progress)));
}

}  // namespace cmoe
