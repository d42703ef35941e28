// optimizer.cpp — AdamW, gradient norm and LR schedule (see optimizer.h).
#include "moe/train/optimizer.h"

#include <algorithm>
#include <cmath>

#include "core/cpu/kernels.h"
#include "core/cuda/multi_tensor.h"
#include "core/ops/elementwise.h"

// GCC 12 reports false "may be used uninitialized" warnings inside avx512fintrin.h
// (_mm512_undefined_* placeholders); they are not about this file's code.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

namespace cmoe {

AdamW::AdamW(std::vector<Param>* params, const AdamWOptions& opt) : params_(params), opt_(opt) {
  for (const Param& p : *params_) {
    m_.push_back(Tensor::zeros(p.var.shape(), DType::kF32));
    v_.push_back(Tensor::zeros(p.var.shape(), DType::kF32));
  }
}

namespace {
// Per-step AdamW constants: step = lr / bc1, and 1 / sqrt(bc2) for the bias-corrected v.
struct AdamWCoeffs {
  float b1, b2, eps, decay_mul, step, inv_sqrt_bc2, gs;
};

// p = p * decay_mul - step * m / (sqrt(v) / sqrt(bc2) + eps) over [0, n), m and v updated first.
void adamw_span_scalar(float* __restrict p, float* __restrict m, float* __restrict v,
                       const float* __restrict g, int64_t n, const AdamWCoeffs& c) {
  for (int64_t i = 0; i < n; ++i) {
    const float gi = g[i] * c.gs;
    const float mi = c.b1 * m[i] + (1.0f - c.b1) * gi;
    const float vi = c.b2 * v[i] + (1.0f - c.b2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    p[i] = p[i] * c.decay_mul - c.step * mi / (std::sqrt(vi) * c.inv_sqrt_bc2 + c.eps);
  }
}

// The same update 16 lanes at a time. Written with intrinsics: GCC does not vectorise the
// scalar loop (std::sqrt keeps errno semantics), and the scalar divide/sqrt chain made AdamW
// ~7% of a bf16 training step.
__attribute__((target("avx512f")))
void adamw_span_avx512(float* __restrict p, float* __restrict m, float* __restrict v,
                       const float* __restrict g, int64_t n, const AdamWCoeffs& c) {
  const __m512 b1 = _mm512_set1_ps(c.b1), one_b1 = _mm512_set1_ps(1.0f - c.b1);
  const __m512 b2 = _mm512_set1_ps(c.b2), one_b2 = _mm512_set1_ps(1.0f - c.b2);
  const __m512 gs = _mm512_set1_ps(c.gs), decay = _mm512_set1_ps(c.decay_mul);
  const __m512 step = _mm512_set1_ps(c.step), isb2 = _mm512_set1_ps(c.inv_sqrt_bc2);
  const __m512 eps = _mm512_set1_ps(c.eps);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 gi = _mm512_mul_ps(_mm512_loadu_ps(g + i), gs);
    const __m512 mi = _mm512_fmadd_ps(b1, _mm512_loadu_ps(m + i), _mm512_mul_ps(one_b1, gi));
    const __m512 vi =
        _mm512_fmadd_ps(b2, _mm512_loadu_ps(v + i), _mm512_mul_ps(_mm512_mul_ps(one_b2, gi), gi));
    _mm512_storeu_ps(m + i, mi);
    _mm512_storeu_ps(v + i, vi);
    const __m512 denom = _mm512_fmadd_ps(_mm512_sqrt_ps(vi), isb2, eps);
    const __m512 upd = _mm512_div_ps(_mm512_mul_ps(step, mi), denom);
    _mm512_storeu_ps(p + i, _mm512_sub_ps(_mm512_mul_ps(_mm512_loadu_ps(p + i), decay), upd));
  }
  adamw_span_scalar(p + i, m + i, v + i, g + i, n - i, c);
}

void adamw_loop(float* p, float* m, float* v, const float* g, int64_t n, const AdamWCoeffs& c) {
  constexpr int64_t kChunk = 1 << 14;  // elements per parallel work item
  const bool avx512 = cpu::has_avx512();
#pragma omp parallel for schedule(static) if (n > 4 * kChunk)
  for (int64_t b = 0; b < n; b += kChunk) {
    const int64_t len = std::min(kChunk, n - b);
    if (avx512) {
      adamw_span_avx512(p + b, m + b, v + b, g + b, len, c);
    } else {
      adamw_span_scalar(p + b, m + b, v + b, g + b, len, c);
    }
  }
}
}  // namespace

void AdamW::shard(const std::vector<bool>& owned) {
  CMOE_CHECK(owned.size() == params_->size(), "AdamW::shard: ", owned.size(), " flags for ", params_->size(), " parameters");
  owned_ = owned;
  for (size_t i = 0; i < owned.size(); ++i) {
    if (!owned[i]) m_[i] = Tensor(), v_[i] = Tensor();
  }
}

void AdamW::to_device(Device device) {
  for (std::vector<Tensor>* list : {&m_, &v_})
    for (Tensor& t : *list)
      if (t.defined() && t.device() != device) t = t.to(device);
}

void AdamW::step(float lr, float grad_scale) {
  ++t_;
  const float bc1 = 1.0f - std::pow(opt_.beta1, static_cast<float>(t_));
  const float bc2 = 1.0f - std::pow(opt_.beta2, static_cast<float>(t_));
  if (!params_->empty() && !(*params_)[0].var.value().device().is_cpu()) {
    // Every parameter with a gradient in one launch; the per-tensor weight decay as a factor.
    std::vector<Tensor> ps, ms, vs, gs;
    std::vector<float> decay;
    for (size_t i = 0; i < params_->size(); ++i) {
      Param& p = (*params_)[i];
      if (!p.var.grad().defined()) continue;
      CMOE_CHECK(owns(i), "AdamW: a gradient for parameter ", p.name, ", whose state another rank owns");
      ps.push_back(p.var.value());
      ms.push_back(m_[i]);
      vs.push_back(v_[i]);
      gs.push_back(p.var.grad());
      decay.push_back(p.decay ? 1.0f - lr * opt_.weight_decay : 1.0f);
    }
    cuda::adamw_multi(ps, ms, vs, gs, decay,
                      {opt_.beta1, opt_.beta2, opt_.eps, lr / bc1, 1.0f / std::sqrt(bc2), grad_scale});
    return;
  }
  for (size_t i = 0; i < params_->size(); ++i) {
    Param& p = (*params_)[i];
    const Tensor& g = p.var.grad();
    if (!g.defined()) continue;
    CMOE_CHECK(owns(i), "AdamW: a gradient for parameter ", p.name, ", whose state another rank owns");
    const float decay_mul = p.decay ? 1.0f - lr * opt_.weight_decay : 1.0f;
    const AdamWCoeffs c{opt_.beta1, opt_.beta2, opt_.eps, decay_mul, lr / bc1, 1.0f / std::sqrt(bc2), grad_scale};
    adamw_loop(p.var.mutable_value().data<float>(), m_[i].data<float>(), v_[i].data<float>(), g.data<float>(),
               g.numel(), c);
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
