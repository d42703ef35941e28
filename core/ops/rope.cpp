// rope.cpp — CPU rotary position embedding, rotate_half convention (see rope.h).
//
// The cos/sin of every (position, pair) are computed once per shape in double (so long
// contexts keep their angles accurate) and rounded to f32 into a small table; the table of the
// last (theta, pos0, T, Dh) is kept per calling thread, since a step calls rope with the same
// arguments for q and k, forward and backward. The rotation itself is a vectorised loop over
// pairs, OpenMP over (b, t).
#include "core/ops/rope.h"

#include <cmath>
#include <vector>

namespace cmoe::ops {

namespace {

struct RopeTable {
  float theta = 0.0f;
  int64_t pos0 = -1, t = 0, half = 0;
  std::vector<float> cos, sin;  // (T, Dh/2) each
};

const RopeTable& rope_table(float theta, int64_t pos0, int64_t t, int64_t half) {
  thread_local RopeTable tab;
  if (tab.theta == theta && tab.pos0 == pos0 && tab.t == t && tab.half == half) return tab;
  tab.theta = theta;
  tab.pos0 = pos0;
  tab.t = t;
  tab.half = half;
  tab.cos.resize(static_cast<size_t>(t * half));
  tab.sin.resize(static_cast<size_t>(t * half));
  std::vector<double> freq(static_cast<size_t>(half));  // f_i = theta^(-2i/Dh)
  for (int64_t i = 0; i < half; ++i) {
    freq[i] = std::pow(static_cast<double>(theta), -static_cast<double>(2 * i) / static_cast<double>(2 * half));
  }
  float* pc = tab.cos.data();
  float* ps = tab.sin.data();
#pragma omp parallel for schedule(static) if (t * half >= 4096)
  for (int64_t p = 0; p < t; ++p) {
    for (int64_t i = 0; i < half; ++i) {
      const double a = static_cast<double>(pos0 + p) * freq[i];
      pc[p * half + i] = static_cast<float>(std::cos(a));
      ps[p * half + i] = static_cast<float>(std::sin(a));
    }
  }
  return tab;
}

// For each of `heads` vectors of length 2*half at x/out:
//   out[i] = x[i] c_i - x[i+half] s_i;  out[i+half] = x[i+half] c_i + x[i] s_i,  s_i = sign * sin_i.
// Iterations touch disjoint elements (i and i+half), so out == x is safe.
__attribute__((target_clones("avx512f", "default")))
void rotate_heads(float* out, const float* x, const float* c, const float* s, float sign,
                  int64_t heads, int64_t half) {
  for (int64_t h = 0; h < heads; ++h) {
    const float* xa = x + h * 2 * half;
    const float* xb = xa + half;
    float* oa = out + h * 2 * half;
    float* ob = oa + half;
#pragma omp simd
    for (int64_t i = 0; i < half; ++i) {
      const float a = xa[i], b = xb[i], sn = sign * s[i];
      oa[i] = a * c[i] - b * sn;
      ob[i] = b * c[i] + a * sn;
    }
  }
}

void rope_apply(Tensor& out, const Tensor& x, float theta, int64_t pos0, float sign, const char* op) {
  CMOE_CHECK(x.rank() == 4 && x.dtype() == DType::kF32 && x.device().is_cpu() &&
                 out.dtype() == DType::kF32 && out.device().is_cpu() && out.shape() == x.shape(),
             op, ": x ", x.str(), " out ", out.str(), ", want (B, T, H, Dh) f32 on CPU");
  const int64_t b = x.dim(0), t = x.dim(1), h = x.dim(2), dh = x.dim(3);
  CMOE_CHECK(dh % 2 == 0, op, ": head dim ", dh, " is odd");
  CMOE_CHECK(pos0 >= 0, op, ": pos0 ", pos0, " < 0");
  const int64_t half = dh / 2;
  const RopeTable& tab = rope_table(theta, pos0, t, half);
  const float* pc = tab.cos.data();   // (T, Dh/2)
  const float* ps = tab.sin.data();   // (T, Dh/2)
  const float* px = x.data<float>();  // (B, T, H, Dh)
  float* po = out.data<float>();      // (B, T, H, Dh)
#pragma omp parallel for schedule(static) if (x.numel() >= (1 << 14))
  for (int64_t bt = 0; bt < b * t; ++bt) {
    const int64_t p = bt % t;
    rotate_heads(po + bt * h * dh, px + bt * h * dh, pc + p * half, ps + p * half, sign, h, half);
  }
}

}  // namespace

// out[i] = x[i] cos(p f_i) - x[i + Dh/2] sin(p f_i); out[i + Dh/2] = x[i + Dh/2] cos + x[i] sin
void rope_forward(Tensor& out, const Tensor& x, float theta, int64_t pos0) {
  rope_apply(out, x, theta, pos0, 1.0f, "rope_forward");
}

// dx = R(-p) dout: the same rotation with sin negated.
void rope_backward(Tensor& dx, const Tensor& dout, float theta, int64_t pos0) {
  rope_apply(dx, dout, theta, pos0, -1.0f, "rope_backward");
}

}  // namespace cmoe::ops
