// ops.h — the differentiable functional API: one function per op in the op table.
//
// Each function runs the op's forward kernel (core/ops/*.h) and, when an input requires grad,
// records a Node whose backward calls the op's backward kernel with exactly the tensors it
// saved. Shapes follow the kernels' documentation; leading dimensions are flattened where a
// kernel takes 2-D views, and restored on the result.
#pragma once

#include <memory>
#include <vector>

#include "autograd/variable.h"

namespace cmoe::ag {

// out = a + b, a * b, s * x (same shapes)
Var add(const Var& a, const Var& b);
Var mul(const Var& a, const Var& b);
Var scale(const Var& x, float s);
// out[n, :] = s[n] * x[n, :]: x (..., D), s with one entry per row of x
Var scale_rows(const Var& x, const Var& s);
// out[n, :] = x[n, :] + b: x (..., C), b (C)
Var add_bias(const Var& x, const Var& b);
// () = sum of all elements
Var sum(const Var& x);
// A view with a new shape (aliases x's value; gradient reshaped back). Not a kernel op.
Var reshape(const Var& x, const Shape& shape);

// (N) i32 ids -> (N, D) rows of table (V, D)
Var embedding(const Var& table, const Tensor& ids);
// x (..., K) @ w^T, w (M, K) -> (..., M); compute dtype f32 or bf16 (f32 master weights)
Var linear(const Var& x, const Var& w, DType compute_dtype = DType::kF32);
// Expert linear over row segments: x (R, K), w (G, M, K), offsets G+1 -> (R, M)
Var grouped_linear(const Var& x, const Var& w, std::shared_ptr<const std::vector<int64_t>> offsets,
                   DType compute_dtype = DType::kF32);
// x (..., D), w (D)
Var rmsnorm(const Var& x, const Var& w, float eps);
// x (B, T, H, Dh), positions pos0 + t
Var rope(const Var& x, float theta, int64_t pos0 = 0);
// q, k, v (B, T, H, Dh) -> (B, T, H, Dh), causal; compute dtype as the kernels' (attention.h)
Var attention(const Var& q, const Var& k, const Var& v, float scale, DType compute_dtype = DType::kF32);
// silu(gate) * up, both (..., F) f32. With io_dtype bf16 (on the CPU) the output and the
// gradients for gate and up are bf16, rounded as the bf16 matmuls they feed would round them:
// for gate and up made by bf16 linears and an output consumed by one (the rounding pass moves
// into this op; the same bits reach every matmul). Elsewhere, and on CUDA, everything is f32.
Var swiglu(const Var& gate, const Var& up, DType io_dtype = DType::kF32);
// row softmax over the last dim
Var softmax(const Var& x);
// k largest per row of x (N, E); values differentiable, indices not. mask: (N, E) i32 or none.
struct TopK {
  Var values;      // (N, k)
  Tensor indices;  // (N, k) i32
};
TopK topk(const Var& x, int k, const Tensor& mask = Tensor());
// out[m] = x[idx[m]]:  x (N, D), idx (M) i32 -> (M, D)
Var gather_rows(const Var& x, const Tensor& idx);
// out (n_rows, D), out[idx[m]] += w[m] * y[m]: y (M, D), idx (M) i32, w (M)
Var scatter_add_rows(const Var& y, const Tensor& idx, const Var& w, int64_t n_rows);
// Summed token cross-entropy of logits h @ w^T against targets (negative = ignored), chunked
// over rows: h (N, D), w (V, D), targets (N) i32 -> ()
// expected_grad: the gradient the backward will be given, where the caller knows it (0: not
// known). On the CPU the forward then computes the gradients too, from the same logits, and a
// backward given exactly that gradient uses them instead of computing the logits again; any
// other gradient is still honoured (the logits are recomputed). Results are the same bit for bit.
Var cross_entropy(const Var& h, const Var& w, const Tensor& targets, int64_t chunk = 256,
                  DType compute_dtype = DType::kF32, float expected_grad = 0.0f);

// Routing weights of the chosen experts: w[n, j] = probs[n, idx[n, j]] / S_n, S_n the sum of the
// chosen probabilities (renorm) or 1; probs (N, E), idx (N, K) i32 (-1 = empty, weight 0) -> (N, K)
Var routing_weights(const Var& probs, const Tensor& idx, bool renorm);
// Router z-loss: () = mean_n logsumexp(logits[n, :])^2, logits (N, E)
Var z_loss(const Var& logits);

}  // namespace cmoe::ag
