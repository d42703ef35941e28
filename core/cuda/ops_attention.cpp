// ops_attention.cpp — the CUDA column's fused adapters (core/cuda/kernels.h): causal attention
// (f32: the plugin's flash kernels; bf16: cuBLAS strided-batched products over a chunk of heads
// with the scores materialised per chunk, plus the plugin's softmax and dS row kernels) and the
// LM-head cross-entropy, chunked over rows like the CPU's:
// per chunk, logits = h_c @ w^T on cuBLAS into a reused (rows, V) f32 buffer, then a row kernel
// (lse and per-row loss; in backward, dlogits in place) and, in backward, two cuBLAS products.
#include <algorithm>

#include "core/cuda/adapter_util.h"
#include "core/cuda/kernels.h"

namespace cmoe::cuda {

using detail::expect;
using detail::f32;
using detail::i32;

namespace {

void check_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& lse, Device d, const char* op) {
  for (const Tensor* t : std::initializer_list<const Tensor*>{&q, &k, &v, &lse}) expect(*t, DType::kF32, d, op, "a tensor");
  CMOE_CHECK(q.rank() == 4 && k.shape() == q.shape() && v.shape() == q.shape(), op, ": q ", q.str(), ", k ", k.str(),
             ", v ", v.str(), " must share one (B, T, H, Dh) shape");
  CMOE_CHECK(lse.shape() == Shape({q.dim(0), q.dim(2), q.dim(1)}), op, ": lse is ", lse.str(), ", expected (B, H, T)");
  CMOE_CHECK(q.dim(3) <= 128, op, ": head dim ", q.dim(3), " > 128, the CUDA kernels' limit");
}

// Rows per chunk: at least the caller's chunk, up to kCrossEntropyLogitElems logits at once.
int64_t ce_chunk_rows(int64_t n, int64_t v, int64_t chunk) {
  const int64_t by_memory = std::max<int64_t>(1, kCrossEntropyLogitElems / std::max<int64_t>(v, 1));
  return std::max<int64_t>(1, std::min(n, std::max(chunk, by_memory)));
}

void check_ce(const Tensor& h, const Tensor& w, const Tensor& targets, const Tensor& lse, int64_t chunk,
              DType compute_dtype, Device d) {
  expect(h, DType::kF32, d, "cross_entropy", "h");
  expect(w, DType::kF32, d, "cross_entropy", "w");
  expect(targets, DType::kI32, d, "cross_entropy", "targets");
  expect(lse, DType::kF32, d, "cross_entropy", "lse");
  CMOE_CHECK(h.rank() == 2 && w.rank() == 2 && w.dim(1) == h.dim(1) && targets.numel() == h.dim(0) &&
                 lse.numel() == h.dim(0),
             "cross_entropy: h ", h.str(), ", w ", w.str(), ", targets ", targets.str(), ", lse ", lse.str());
  CMOE_CHECK(chunk > 0, "cross_entropy: chunk must be positive, got ", chunk);
  CMOE_CHECK(compute_dtype == DType::kF32 || compute_dtype == DType::kBF16,
             "cross_entropy: compute dtype must be f32 or bf16, got ", dtype_name(compute_dtype));
}

// The bf16 path's shapes: (B, T, H, Dh) tensors, heads processed `chunk` at a time per batch row.
struct AttnGemm {
  int64_t B, T, H, Dh, chunk;
  int64_t ld() const { return H * Dh; }  // elements between positions t and t + 1 of a head
  // Element offset of head h0 of batch row b in a (B, T, H, Dh) tensor.
  int64_t at(int64_t b, int64_t h0) const { return (b * T * H + h0) * Dh; }
};

AttnGemm attn_gemm(const Tensor& q, int64_t bytes_per_score) {
  AttnGemm g{q.dim(0), q.dim(1), q.dim(2), q.dim(3), 1};
  const int64_t per_head = std::max<int64_t>(1, g.T * g.T * bytes_per_score);
  g.chunk = std::clamp<int64_t>(kAttentionScoreBytes / per_head, 1, g.H);
  return g;
}

// c_i (m, n) = op(a_i) op(b_i) for the `n_heads` heads of a chunk (strided batch over heads).
void head_gemm(float* c, const void* a, const void* b, int64_t m, int64_t n, int64_t k, int64_t lda, int64_t ldb,
               int64_t ldc, int64_t sa, int64_t sb, int64_t sc, int64_t n_heads, bool ta, bool tb,
               const BlasHandle& h) {
  check(api().blas_matmul_strided(c, a, b, CMOE_CUDA_BF16, m, n, k, lda, ldb, ldc, sa, sb, sc, n_heads, ta, tb, 1.0f,
                                  0.0f, h.get()),
        "blas_matmul_strided (attention)");
}

const uint16_t* bits(const Tensor& t) { return reinterpret_cast<const uint16_t*>(t.data<bf16>()); }
uint16_t* bits_mut(const Tensor& t) { return reinterpret_cast<uint16_t*>(t.data<bf16>()); }

// out = softmax(scale Q K^T, causal) V with bf16 Q, K, V and P.
void attention_forward_bf16(Tensor& out, Tensor& lse, const Tensor& q, const Tensor& k, const Tensor& v, float scale,
                            Device d) {
  const AttnGemm g = attn_gemm(q, /*S f32 + P bf16*/ 6);
  const Tensor q16 = to_compute(q, DType::kBF16), k16 = to_compute(k, DType::kBF16), v16 = to_compute(v, DType::kBF16);
  Tensor S = Tensor::empty({g.chunk, g.T, g.T}, DType::kF32, d);   // (heads, T, T) scores
  Tensor P = Tensor::empty({g.chunk, g.T, g.T}, DType::kBF16, d);  // (heads, T, T) probabilities
  const BlasHandle& h = blas(d);
  const int64_t TT = g.T * g.T;
  for (int64_t b = 0; b < g.B; ++b) {
    for (int64_t h0 = 0; h0 < g.H; h0 += g.chunk) {
      const int64_t n = std::min(g.chunk, g.H - h0);
      // S_h = Q_h K_h^T: (T, Dh) rows ld H*Dh, heads Dh apart
      head_gemm(f32(S), bits(q16) + g.at(b, h0), bits(k16) + g.at(b, h0), g.T, g.T, g.Dh, g.ld(), g.ld(), g.T, g.Dh,
                g.Dh, TT, n, false, true, h);
      check(api().attention_probs_bf16(bits_mut(P), f32(lse) + (b * g.H + h0) * g.T, f32(S), n * g.T, g.T, scale, 1,
                                       compute_stream()),
            "attention_probs_bf16");
      // O_h = P_h V_h, written into out's (T, Dh) rows of the head
      head_gemm(f32(out) + g.at(b, h0), bits(P), bits(v16) + g.at(b, h0), g.T, g.Dh, g.T, g.T, g.ld(), g.ld(), TT,
                g.Dh, g.Dh, n, false, false, h);
    }
  }
}

// dV = P^T dO; dS = scale P (dO V^T - D); dQ = dS K; dK = dS^T Q (bf16 inputs).
void attention_backward_bf16(Tensor& dq, Tensor& dk, Tensor& dv, const Tensor& dout, const Tensor& q, const Tensor& k,
                             const Tensor& v, const Tensor& out, const Tensor& lse, float scale, Device d) {
  const AttnGemm g = attn_gemm(q, /*S f32 + dP f32 + P/dS bf16*/ 10);
  Tensor delta = Tensor::empty(lse.shape(), DType::kF32, d);  // (B, H, T) rowsum(dout * out)
  check(api().attention_delta_f32(f32(delta), f32(dout), f32(out), g.B, g.T, g.H, g.Dh, compute_stream()),
        "attention_delta_f32");
  const Tensor q16 = to_compute(q, DType::kBF16), k16 = to_compute(k, DType::kBF16), v16 = to_compute(v, DType::kBF16);
  const Tensor do16 = to_compute(dout, DType::kBF16);
  Tensor S = Tensor::empty({g.chunk, g.T, g.T}, DType::kF32, d);   // scores
  Tensor dP = Tensor::empty({g.chunk, g.T, g.T}, DType::kF32, d);  // dO V^T
  Tensor P = Tensor::empty({g.chunk, g.T, g.T}, DType::kBF16, d);  // P, then dS
  const BlasHandle& h = blas(d);
  const int64_t TT = g.T * g.T;
  for (int64_t b = 0; b < g.B; ++b) {
    for (int64_t h0 = 0; h0 < g.H; h0 += g.chunk) {
      const int64_t n = std::min(g.chunk, g.H - h0), at = g.at(b, h0);
      float* lse_c = f32(lse) + (b * g.H + h0) * g.T;
      head_gemm(f32(S), bits(q16) + at, bits(k16) + at, g.T, g.T, g.Dh, g.ld(), g.ld(), g.T, g.Dh, g.Dh, TT, n, false,
                true, h);
      check(api().attention_probs_bf16(bits_mut(P), lse_c, f32(S), n * g.T, g.T, scale, 0, compute_stream()),
            "attention_probs_bf16");
      // dV_h (keys, Dh) = P_h^T dO_h
      head_gemm(f32(dv) + at, bits(P), bits(do16) + at, g.T, g.Dh, g.T, g.T, g.ld(), g.ld(), TT, g.Dh, g.Dh, n, true,
                false, h);
      // dP_h = dO_h V_h^T
      head_gemm(f32(dP), bits(do16) + at, bits(v16) + at, g.T, g.T, g.Dh, g.ld(), g.ld(), g.T, g.Dh, g.Dh, TT, n,
                false, true, h);
      check(api().attention_dscores_bf16(bits_mut(P), f32(S), f32(dP), lse_c, f32(delta) + (b * g.H + h0) * g.T,
                                         n * g.T, g.T, scale, compute_stream()),
            "attention_dscores_bf16");
      // dQ_h = dS_h K_h; dK_h = dS_h^T Q_h (scale is inside dS)
      head_gemm(f32(dq) + at, bits(P), bits(k16) + at, g.T, g.Dh, g.T, g.T, g.ld(), g.ld(), TT, g.Dh, g.Dh, n, false,
                false, h);
      head_gemm(f32(dk) + at, bits(P), bits(q16) + at, g.T, g.Dh, g.T, g.T, g.ld(), g.ld(), TT, g.Dh, g.Dh, n, true,
                false, h);
    }
  }
}

}  // namespace

void attention_forward(Tensor& out, Tensor& lse, const Tensor& q, const Tensor& k, const Tensor& v, float scale,
                       DType compute_dtype) {
  const Device d = detail::device_of(q, "attention_forward");
  check_attention(q, k, v, lse, d, "attention_forward");
  expect(out, DType::kF32, d, "attention_forward", "out");
  CMOE_CHECK(out.shape() == q.shape(), "attention_forward: out ", out.str());
  if (compute_dtype == DType::kBF16) {
    attention_forward_bf16(out, lse, q, k, v, scale, d);
    return;
  }
  check(api().attention_forward_f32(f32(out), f32(lse), f32(q), f32(k), f32(v), q.dim(0), q.dim(1), q.dim(2),
                                    q.dim(3), scale, compute_stream()),
        "attention_forward_f32");
}

void attention_backward(Tensor& dq, Tensor& dk, Tensor& dv, const Tensor& dout, const Tensor& q, const Tensor& k,
                        const Tensor& v, const Tensor& out, const Tensor& lse, float scale, DType compute_dtype) {
  const Device d = detail::device_of(q, "attention_backward");
  check_attention(q, k, v, lse, d, "attention_backward");
  for (const Tensor* t : std::initializer_list<const Tensor*>{&dq, &dk, &dv, &dout, &out}) {
    expect(*t, DType::kF32, d, "attention_backward", "a gradient or output");
    CMOE_CHECK(t->shape() == q.shape(), "attention_backward: ", t->str(), " for q ", q.str());
  }
  if (compute_dtype == DType::kBF16) {
    attention_backward_bf16(dq, dk, dv, dout, q, k, v, out, lse, scale, d);
    return;
  }
  Tensor delta = Tensor::empty(lse.shape(), DType::kF32, d);  // (B, H, T) rowsum(dout * out)
  check(api().attention_backward_f32(f32(dq), f32(dk), f32(dv), f32(delta), f32(dout), f32(q), f32(k), f32(v),
                                     f32(out), f32(lse), q.dim(0), q.dim(1), q.dim(2), q.dim(3), scale,
                                     compute_stream()),
        "attention_backward_f32");
}

void cross_entropy_forward(Tensor& loss, Tensor& lse, const Tensor& h, const Tensor& w, const Tensor& targets,
                           int64_t chunk, DType compute_dtype) {
  const Device d = detail::device_of(h, "cross_entropy_forward");
  check_ce(h, w, targets, lse, chunk, compute_dtype, d);
  expect(loss, DType::kF32, d, "cross_entropy_forward", "loss");
  CMOE_CHECK(loss.numel() == 1, "cross_entropy: loss is ", loss.str());
  const int64_t N = h.dim(0), V = w.dim(0), cn = ce_chunk_rows(N, V, chunk);
  const BlasHandle& handle = blas(d);
  Tensor wc = to_compute(w, compute_dtype);                        // (V, D)
  Tensor logits = Tensor::empty({cn, V}, DType::kF32, d);          // (chunk, V), reused
  Tensor row_loss = scratch(d, static_cast<size_t>(N) * sizeof(double));  // (N) f64
  for (int64_t n0 = 0; n0 < N; n0 += cn) {
    const int64_t rows = std::min(cn, N - n0);
    Tensor lg = logits.slice0(0, rows);
    matmul(lg, to_compute(h.slice0(n0, n0 + rows), compute_dtype), wc, false, true, 1.0f, 0.0f, handle);
    check(api().ce_rows_forward_f32(f32(lse) + n0, static_cast<double*>(row_loss.raw_data()) + n0, f32(lg),
                                    i32(targets) + n0, rows, V, compute_stream()),
          "ce_rows_forward_f32");
  }
  check(api().sum_f64(f32(loss), static_cast<const double*>(row_loss.raw_data()), N, compute_stream()), "sum_f64");
}

void cross_entropy_backward(Tensor& dh, Tensor& dw, const Tensor& dloss, const Tensor& h, const Tensor& w,
                            const Tensor& targets, const Tensor& lse, int64_t chunk, DType compute_dtype) {
  const Device d = detail::device_of(h, "cross_entropy_backward");
  check_ce(h, w, targets, lse, chunk, compute_dtype, d);
  expect(dh, DType::kF32, d, "cross_entropy_backward", "dh");
  expect(dw, DType::kF32, d, "cross_entropy_backward", "dw");
  expect(dloss, DType::kF32, d, "cross_entropy_backward", "dloss");
  CMOE_CHECK(dh.shape() == h.shape() && dw.shape() == w.shape() && dloss.numel() == 1, "cross_entropy_backward: dh ",
             dh.str(), ", dw ", dw.str(), ", dloss ", dloss.str());
  const int64_t N = h.dim(0), V = w.dim(0), cn = ce_chunk_rows(N, V, chunk);
  const BlasHandle& handle = blas(d);
  Tensor wc = to_compute(w, compute_dtype);
  Tensor logits = Tensor::empty({cn, V}, DType::kF32, d);  // (chunk, V): logits, then dlogits
  for (int64_t n0 = 0; n0 < N; n0 += cn) {
    const int64_t rows = std::min(cn, N - n0);
    Tensor lg = logits.slice0(0, rows);
    Tensor hc = to_compute(h.slice0(n0, n0 + rows), compute_dtype);
    matmul(lg, hc, wc, false, true, 1.0f, 0.0f, handle);
    check(api().ce_rows_backward_f32(f32(lg), i32(targets) + n0, f32(lse) + n0, f32(dloss), rows, V,
                                     compute_stream()),
          "ce_rows_backward_f32");
    Tensor dlg = to_compute(lg, compute_dtype);
    Tensor dh_c = dh.slice0(n0, n0 + rows);
    matmul(dh_c, dlg, wc, false, false, 1.0f, 0.0f, handle);
    matmul(dw, dlg, hc, true, false, 1.0f, 1.0f, handle);
  }
}

}  // namespace cmoe::cuda
