// elementwise.cpp — CPU elementwise and reduction kernels (see elementwise.h).
// The loops are written so GCC vectorises them (AVX-512 under the target clones below).
#include "core/ops/elementwise.h"

namespace cmoe::ops {

namespace {
void check_f32_same(const Tensor& a, const Tensor& b, const char* op) {
  CMOE_CHECK(a.dtype() == DType::kF32 && b.dtype() == DType::kF32 && a.numel() == b.numel() &&
                 a.device().is_cpu() && b.device().is_cpu(),
             op, ": ", a.str(), " vs ", b.str());
}

__attribute__((target_clones("avx512f", "default")))
void add_loop(float* __restrict o, const float* a, const float* b, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n > (1 << 16))
  for (int64_t i = 0; i < n; ++i) o[i] = a[i] + b[i];
}

__attribute__((target_clones("avx512f", "default")))
void mul_loop(float* __restrict o, const float* a, const float* b, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n > (1 << 16))
  for (int64_t i = 0; i < n; ++i) o[i] = a[i] * b[i];
}

__attribute__((target_clones("avx512f", "default")))
void scale_loop(float* o, const float* x, float s, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n > (1 << 16))
  for (int64_t i = 0; i < n; ++i) o[i] = s * x[i];
}

// Row bodies for kernels that parallelise over rows: no OpenMP region of their own (a nested,
// serialised region per row cost ~0.3 us each: 0.65 ms for a (2048, 2) add_bias).
__attribute__((target_clones("avx512f", "default")))
void add_span(float* __restrict o, const float* a, const float* b, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) o[i] = a[i] + b[i];
}

__attribute__((target_clones("avx512f", "default")))
void scale_span(float* __restrict o, const float* x, float s, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) o[i] = s * x[i];
}

__attribute__((target_clones("avx512f", "default")))
void axpy_loop(float* y, float a, const float* x, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n > (1 << 16))
  for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

// f64 sum of squares; `simd` lets GCC vectorise the f64 reduction (a plain loop is a serial
// 4-cycle add chain per element, ~6x slower on the optimizer's grad-norm pass).
__attribute__((target_clones("avx512f", "default")))
double sum_squares_loop(const float* p, int64_t n) {
  double s = 0;
#pragma omp parallel for simd reduction(+ : s) schedule(static) if (n > (1 << 16))
  for (int64_t i = 0; i < n; ++i) s += static_cast<double>(p[i]) * p[i];
  return s;
}
}  // namespace

void add_forward(Tensor& out, const Tensor& a, const Tensor& b) {
  check_f32_same(a, b, "add");
  check_f32_same(out, a, "add");
  add_loop(out.data<float>(), a.data<float>(), b.data<float>(), a.numel());
}

void add_backward(Tensor& da, Tensor& db, const Tensor& dout) {
  if (da.defined()) da.copy_from(dout);
  if (db.defined()) db.copy_from(dout);
}

void mul_forward(Tensor& out, const Tensor& a, const Tensor& b) {
  check_f32_same(a, b, "mul");
  check_f32_same(out, a, "mul");
  mul_loop(out.data<float>(), a.data<float>(), b.data<float>(), a.numel());
}

void mul_backward(Tensor& da, Tensor& db, const Tensor& dout, const Tensor& a, const Tensor& b) {
  if (da.defined()) mul_forward(da, dout, b);
  if (db.defined()) mul_forward(db, dout, a);
}

void scale_forward(Tensor& out, const Tensor& x, float s) {
  check_f32_same(out, x, "scale");
  scale_loop(out.data<float>(), x.data<float>(), s, x.numel());
}

void scale_backward(Tensor& dx, const Tensor& dout, float s) { scale_forward(dx, dout, s); }

void sum_forward(Tensor& out, const Tensor& x) {
  CMOE_CHECK(out.numel() == 1 && out.dtype() == DType::kF32 && x.dtype() == DType::kF32, "sum: ",
             out.str(), " <- ", x.str());
  const float* p = x.data<float>();
  double s = 0;
  const int64_t n = x.numel();
#pragma omp parallel for reduction(+ : s) schedule(static) if (n > (1 << 16))
  for (int64_t i = 0; i < n; ++i) s += p[i];
  out.data<float>()[0] = static_cast<float>(s);
}

void sum_backward(Tensor& dx, const Tensor& dout) {
  CMOE_CHECK(dout.numel() == 1, "sum_backward: dout ", dout.str());
  dx.fill_(dout.data<float>()[0]);
}

void scale_rows_forward(Tensor& out, const Tensor& x, const Tensor& s) {
  check_f32_same(out, x, "scale_rows");
  CMOE_CHECK(s.dtype() == DType::kF32 && s.numel() == x.rows(), "scale_rows: s ", s.str(), " for ", x.str());
  const int64_t N = x.rows(), D = x.cols();
  const float *X = x.data<float>(), *S = s.data<float>();
  float* O = out.data<float>();
#pragma omp parallel for schedule(static) if (N * D > (1 << 15))
  for (int64_t n = 0; n < N; ++n) scale_span(O + n * D, X + n * D, S[n], D);
}

void scale_rows_backward(Tensor& dx, Tensor& ds, const Tensor& dout, const Tensor& x, const Tensor& s) {
  const int64_t N = x.rows(), D = x.cols();
  if (dx.defined()) scale_rows_forward(dx, dout, s);
  if (ds.defined()) {
    const float *G = dout.data<float>(), *X = x.data<float>();
    float* dS = ds.data<float>();
#pragma omp parallel for schedule(static) if (N * D > (1 << 15))
    for (int64_t n = 0; n < N; ++n) {
      double acc = 0;
      for (int64_t c = 0; c < D; ++c) acc += static_cast<double>(G[n * D + c]) * X[n * D + c];
      dS[n] = static_cast<float>(acc);
    }
  }
}

void add_bias_forward(Tensor& out, const Tensor& x, const Tensor& b) {
  check_f32_same(out, x, "add_bias");
  CMOE_CHECK(b.dtype() == DType::kF32 && b.numel() == x.cols(), "add_bias: b ", b.str(), " for ", x.str());
  const int64_t N = x.rows(), C = x.cols();
  const float *X = x.data<float>(), *B = b.data<float>();
  float* O = out.data<float>();
#pragma omp parallel for schedule(static) if (N * C > (1 << 15))
  for (int64_t n = 0; n < N; ++n) add_span(O + n * C, X + n * C, B, C);
}

void add_bias_backward(Tensor& dx, Tensor& db, const Tensor& dout) {
  if (dx.defined()) dx.copy_from(dout);
  const int64_t N = dout.rows(), C = dout.cols();
  const float* G = dout.data<float>();
  float* dB = db.data<float>();
  // Column sums in double, rows in order: deterministic whatever the thread count.
  for (int64_t c = 0; c < C; ++c) {
    double acc = 0;
    for (int64_t n = 0; n < N; ++n) acc += G[n * C + c];
    dB[c] += static_cast<float>(acc);
  }
}

void axpy(Tensor& y, float a, const Tensor& x) {
  check_f32_same(y, x, "axpy");
  axpy_loop(y.data<float>(), a, x.data<float>(), x.numel());
}

double sum_squares(const Tensor& x) {
  CMOE_CHECK(x.dtype() == DType::kF32 && x.device().is_cpu(), "sum_squares: ", x.str());
  return sum_squares_loop(x.data<float>(), x.numel());
}

}  // namespace cmoe::ops
