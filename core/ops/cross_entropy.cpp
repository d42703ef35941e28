// cross_entropy.cpp — LM-head cross-entropy on CPU, chunked over rows.
//
// Each chunk of `chunk` rows computes its logits (chunk, V) with one matmul, reduces them to a
// per-row log-sum-exp and loss, and is overwritten by the next chunk; backward recomputes the
// same logits (bit-identical: same matmul, same inputs) instead of storing them, turns them into
// dlogits in place and feeds two matmuls. Per-row losses are summed serially in f64 so the
// result does not depend on the thread count. In bf16 mode h, w and dlogits are rounded to bf16
// for the matmuls; the softmax itself is always f32.
#include "core/ops/cross_entropy.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "core/cpu/kernels.h"
#include "core/cpu/avx512_math.h"
#include "core/ops/matmul.h"

namespace cmoe::ops {

namespace {

constexpr int kVec = 16;

__mmask16 tail_mask(int64_t n) { return static_cast<__mmask16>((1u << n) - 1); }

// log(sum_j exp(x[j])) over x (n), max-shifted.
CMOE_AVX512_TARGET float row_lse_avx512(const float* x, int64_t n) {
  const int64_t full = n / kVec * kVec;
  __m512 mv = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  for (int64_t j = 0; j < full; j += kVec) mv = _mm512_max_ps(mv, _mm512_loadu_ps(x + j));
  if (full < n) mv = _mm512_mask_max_ps(mv, tail_mask(n - full), mv, _mm512_maskz_loadu_ps(tail_mask(n - full), x + full));
  const float m = _mm512_reduce_max_ps(mv);
  const __m512 mb = _mm512_set1_ps(m);
  __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
  int64_t j = 0;
  for (; j + 2 * kVec <= full; j += 2 * kVec) {
    s0 = _mm512_add_ps(s0, cpu::exp512(_mm512_sub_ps(_mm512_loadu_ps(x + j), mb)));
    s1 = _mm512_add_ps(s1, cpu::exp512(_mm512_sub_ps(_mm512_loadu_ps(x + j + kVec), mb)));
  }
  for (; j < full; j += kVec) s0 = _mm512_add_ps(s0, cpu::exp512(_mm512_sub_ps(_mm512_loadu_ps(x + j), mb)));
  if (full < n) {
    const __mmask16 t = tail_mask(n - full);
    s1 = _mm512_add_ps(s1, _mm512_maskz_mov_ps(t, cpu::exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(t, x + full), mb))));
  }
  return m + std::log(_mm512_reduce_add_ps(_mm512_add_ps(s0, s1)));
}

// x (n) <- s * exp(x - lse)
CMOE_AVX512_TARGET void scaled_softmax_avx512(float* x, int64_t n, float lse, float s) {
  const __m512 lb = _mm512_set1_ps(lse), sb = _mm512_set1_ps(s);
  const int64_t full = n / kVec * kVec;
  for (int64_t j = 0; j < full; j += kVec) {
    _mm512_storeu_ps(x + j, _mm512_mul_ps(sb, cpu::exp512(_mm512_sub_ps(_mm512_loadu_ps(x + j), lb))));
  }
  if (full < n) {
    const __mmask16 t = tail_mask(n - full);
    const __m512 v = _mm512_maskz_loadu_ps(t, x + full);
    _mm512_mask_storeu_ps(x + full, t, _mm512_mul_ps(sb, cpu::exp512(_mm512_sub_ps(v, lb))));
  }
}

float row_lse_ref(const float* x, int64_t n) {
  const float m = *std::max_element(x, x + n);
  float s = 0.0f;
  for (int64_t j = 0; j < n; ++j) s += std::exp(x[j] - m);
  return m + std::log(s);
}

void scaled_softmax_ref(float* x, int64_t n, float lse, float s) {
  for (int64_t j = 0; j < n; ++j) x[j] = s * std::exp(x[j] - lse);
}

float row_lse(const float* x, int64_t n) {
  return cpu::has_avx512() ? row_lse_avx512(x, n) : row_lse_ref(x, n);
}

void scaled_softmax(float* x, int64_t n, float lse, float s) {
  if (cpu::has_avx512()) {
    scaled_softmax_avx512(x, n, lse, s);
  } else {
    scaled_softmax_ref(x, n, lse, s);
  }
}

void check_args(const Tensor& h, const Tensor& w, const Tensor& targets, const Tensor& lse,
                int64_t chunk, DType compute_dtype) {
  CMOE_CHECK(h.rank() == 2 && h.dtype() == DType::kF32 && h.device().is_cpu(),
             "cross_entropy: h must be f32 (N, D) on cpu, got ", h.str());
  CMOE_CHECK(w.rank() == 2 && w.dtype() == DType::kF32 && w.device().is_cpu() && w.dim(1) == h.dim(1),
             "cross_entropy: w must be f32 (V, ", h.dim(1), ") on cpu, got ", w.str());
  CMOE_CHECK(targets.dtype() == DType::kI32 && targets.shape() == Shape({h.dim(0)}),
             "cross_entropy: targets must be i32 (", h.dim(0), "), got ", targets.str());
  CMOE_CHECK(lse.dtype() == DType::kF32 && lse.shape() == Shape({h.dim(0)}),
             "cross_entropy: lse must be f32 (", h.dim(0), "), got ", lse.str());
  CMOE_CHECK(chunk > 0, "cross_entropy: chunk must be positive, got ", chunk);
  CMOE_CHECK(compute_dtype == DType::kF32 || compute_dtype == DType::kBF16,
             "cross_entropy: compute dtype must be f32 or bf16, got ", dtype_name(compute_dtype));
}

// The matmul operands of one run: w (and each chunk of h) in the compute dtype.
struct Operands {
  bool use_bf16;
  Tensor w;       // (V, D) compute dtype
  Tensor h_buf;   // (chunk, D) bf16 staging for h chunks; undefined in f32 mode
  Operands(const Tensor& w_f32, int64_t chunk, DType compute_dtype)
      : use_bf16(compute_dtype == DType::kBF16),
        w(use_bf16 ? w_f32.to_dtype(DType::kBF16) : w_f32),
        h_buf(use_bf16 ? Tensor::empty({chunk, w_f32.dim(1)}, DType::kBF16) : Tensor()) {}
  // Rows [n0, n0 + rows) of h in the compute dtype.
  Tensor h_chunk(const Tensor& h, int64_t n0, int64_t rows) const {
    Tensor hc = h.slice0(n0, n0 + rows);
    if (!use_bf16) return hc;
    Tensor hb = h_buf.slice0(0, rows);
    cpu::f32_to_bf16(hb.data<bf16>(), hc.data<float>(), hc.numel());
    return hb;
  }
};

// lse[r] = logsumexp(lg[r]); row_loss[r] = lse[r] - lg[r, t[r]] (0 when t[r] < 0), for the
// chunk whose first row is row n0 of the whole.
void rows_lse_and_loss(const Tensor& lg, const int32_t* tp, float* lp, double* row_loss, int64_t n0) {
  const int64_t rows = lg.dim(0), V = lg.dim(1);
  const float* x = lg.data<float>();
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * V;
    const int32_t t = tp[r];
    CMOE_CHECK(t < V, "cross_entropy: target ", t, " at row ", n0 + r, " >= vocab ", V);
    const float l = row_lse(xr, V);
    lp[r] = l;
    row_loss[r] = t >= 0 ? static_cast<double>(l) - xr[t] : 0.0;
  }
}

void check_grads(const Tensor& dh, const Tensor& dw, const Tensor& h, const Tensor& w) {
  CMOE_CHECK(!dh.defined() || (dh.dtype() == DType::kF32 && dh.shape() == h.shape()),
             "cross_entropy: dh is ", dh.str());
  CMOE_CHECK(!dw.defined() || (dw.dtype() == DType::kF32 && dw.shape() == w.shape()),
             "cross_entropy: dw is ", dw.str());
}

// The one pass over the chunks that forward, backward and the two together share. Per chunk of
// `chunk` rows, the logits are computed in pieces (the whole chunk in f32; halves in bf16, whose
// dlogits go to a bf16 copy, so the f32 logits buffer is half as large), then:
//   forward (total != nullptr): lse[n] = logsumexp(logits[n]), *total = sum of lse - target logit;
//   backward (g != nullptr; lse given, or computed just before by the forward):
//     dlogits[n] = g * (softmax(logits[n]) - onehot(t[n])) (0 when t[n] < 0),
//     dh = dlogits @ w (when defined); dw += dlogits^T @ h (when defined).
void run_chunks(const Tensor& h, const Tensor& w, const Tensor& targets, int64_t chunk,
                DType compute_dtype, float* lp, double* total, const float* g, Tensor& dh, Tensor& dw) {
  const int64_t N = h.dim(0), V = w.dim(0);
  const int64_t cn = std::max<int64_t>(1, std::min(chunk, N));
  Operands operands(w, cn, compute_dtype);
  const int64_t piece = operands.use_bf16 ? (cn + 1) / 2 : cn;
  Tensor logits = Tensor::empty({piece, V}, DType::kF32);  // a piece's logits, then dlogits
  // (chunk, V) bf16 copy of dlogits for the bf16 matmuls; undefined in f32 mode or forward only.
  Tensor dlogits_bf16 =
      operands.use_bf16 && g != nullptr ? Tensor::empty({cn, V}, DType::kBF16) : Tensor();
  std::vector<double> row_loss(total != nullptr ? static_cast<size_t>(cn) : 0);
  const int32_t* tp = targets.data<int32_t>();
  if (total != nullptr) *total = 0.0;
  for (int64_t n0 = 0; n0 < N; n0 += cn) {
    const int64_t rows = std::min(cn, N - n0);
    Tensor hc = operands.h_chunk(h, n0, rows);
    for (int64_t p0 = 0; p0 < rows; p0 += piece) {
      const int64_t pr = std::min(piece, rows - p0), r0 = n0 + p0;
      Tensor lg = logits.slice0(0, pr);
      matmul(lg, hc.slice0(p0, p0 + pr), operands.w, /*trans_a=*/false, /*trans_b=*/true);
      if (total != nullptr) rows_lse_and_loss(lg, tp + r0, lp + r0, row_loss.data() + p0, r0);
      if (g == nullptr) continue;
      float* x = lg.data<float>();
#pragma omp parallel for schedule(static)
      for (int64_t r = 0; r < pr; ++r) {
        float* xr = x + r * V;
        const int32_t t = tp[r0 + r];
        CMOE_CHECK(t < V, "cross_entropy: target ", t, " at row ", r0 + r, " >= vocab ", V);
        if (t < 0) {
          std::fill(xr, xr + V, 0.0f);
          continue;
        }
        scaled_softmax(xr, V, lp[r0 + r], *g);
        xr[t] -= *g;
      }
      if (operands.use_bf16) cpu::f32_to_bf16(dlogits_bf16.slice0(p0, p0 + pr).data<bf16>(), x, lg.numel());
    }
    if (total != nullptr)
      for (int64_t r = 0; r < rows; ++r) *total += row_loss[r];
    if (g == nullptr) continue;
    Tensor dlg = operands.use_bf16 ? dlogits_bf16.slice0(0, rows) : logits.slice0(0, rows);
    if (dh.defined()) {
      Tensor dh_c = dh.slice0(n0, n0 + rows);
      matmul(dh_c, dlg, operands.w, /*trans_a=*/false, /*trans_b=*/false);
    }
    if (dw.defined()) matmul(dw, dlg, hc, /*trans_a=*/true, /*trans_b=*/false, 1.0f, /*beta=*/1.0f);
  }
}

}  // namespace

// logits = h @ w^T (chunked); lse[n] = logsumexp(logits[n]); loss = sum_{t[n]>=0} lse[n] - logits[n, t[n]]
void cross_entropy_forward(Tensor& loss, Tensor& lse, const Tensor& h, const Tensor& w,
                           const Tensor& targets, int64_t chunk, DType compute_dtype) {
  check_args(h, w, targets, lse, chunk, compute_dtype);
  CMOE_CHECK(loss.dtype() == DType::kF32 && loss.numel() == 1, "cross_entropy: loss is ", loss.str());
  double total = 0.0;
  Tensor none;
  run_chunks(h, w, targets, chunk, compute_dtype, lse.data<float>(), &total, nullptr, none, none);
  loss.data<float>()[0] = static_cast<float>(total);
}

// dlogits[n] = dloss * (softmax(logits[n]) - onehot(t[n])) (0 when t[n] < 0);
// dh = dlogits @ w; dw += dlogits^T @ h
void cross_entropy_backward(Tensor& dh, Tensor& dw, const Tensor& dloss, const Tensor& h,
                            const Tensor& w, const Tensor& targets, const Tensor& lse,
                            int64_t chunk, DType compute_dtype) {
  check_args(h, w, targets, lse, chunk, compute_dtype);
  CMOE_CHECK(dh.dtype() == DType::kF32 && dh.shape() == h.shape(), "cross_entropy: dh is ", dh.str());
  CMOE_CHECK(dw.dtype() == DType::kF32 && dw.shape() == w.shape(), "cross_entropy: dw is ", dw.str());
  CMOE_CHECK(dloss.dtype() == DType::kF32 && dloss.numel() == 1, "cross_entropy: dloss is ", dloss.str());
  const float g = dloss.data<float>()[0];
  // lse is read only here: run_chunks writes it in forward mode alone.
  run_chunks(h, w, targets, chunk, compute_dtype, lse.data<float>(), nullptr, &g, dh, dw);
}

// The forward, and in the same pass over each chunk's logits the backward for a known dloss:
// the results are those of cross_entropy_forward followed by cross_entropy_backward with that
// dloss, bit for bit, without computing the logits twice.
void cross_entropy_forward_backward(Tensor& loss, Tensor& lse, Tensor& dh, Tensor& dw, float dloss,
                                    const Tensor& h, const Tensor& w, const Tensor& targets,
                                    int64_t chunk, DType compute_dtype) {
  check_args(h, w, targets, lse, chunk, compute_dtype);
  check_grads(dh, dw, h, w);
  CMOE_CHECK(loss.dtype() == DType::kF32 && loss.numel() == 1, "cross_entropy: loss is ", loss.str());
  double total = 0.0;
  run_chunks(h, w, targets, chunk, compute_dtype, lse.data<float>(), &total, &dloss, dh, dw);
  loss.data<float>()[0] = static_cast<float>(total);
}

}  // namespace cmoe::ops
