// cuda_op_harness_test.cpp — the CUDA column of the op table against the CPU column: every row
// (autograd/op_table.h) has cases here, run on both backends from the same random inputs, and
// their forward results and input gradients must agree within the row's tolerance (f32 kernels:
// rounding and summation order; bf16 matmuls: both sides round the same operands to bf16, so only
// the accumulation order differs).
//
// Shapes include empty batches (0 rows), one row, and expert segments that are empty or very
// uneven (grouped_linear, the dispatch's counting sort). Differentiable ops are checked through
// autograd: L = sum(out * r) for a fixed random r, backward, compare out and every input's
// gradient. Without a usable GPU every case skips, printing why (the driver's reason); the test
// that each row has cases runs everywhere.
#include <cmath>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "autograd/op_table.h"
#include "autograd/ops.h"
#include "core/cuda/cuda_backend.h"
#include "core/rng.h"
#include "gtest/gtest.h"
#include "tests/gradcheck.h"

namespace cmoe {
namespace {

using testing::random_tensor;

struct Tolerance {
  double rtol = 1e-4, atol = 1e-5;
};

// One case: run(dev) returns the tensors to compare (outputs, then input gradients), on the host.
struct Case {
  std::string op;
  std::string what;
  Tolerance tol;
  std::function<std::vector<Tensor>(Device)> run;
};

std::vector<Case>& cases() {
  static std::vector<Case> c;
  return c;
}

Tensor ints(const Shape& s, std::vector<int32_t> v) { return Tensor::from_ints(s, v); }
Tensor on(const Tensor& t, Device d) { return t.defined() && t.device() != d ? t.to(d) : t; }
Tensor host(const Tensor& t) { return t.defined() && !t.device().is_cpu() ? t.to(kCPU) : t; }

// Random i32 in [0, n) (Philox, deterministic).
Tensor random_ids(int64_t count, int32_t n, uint64_t stream) {
  std::vector<int32_t> v(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) v[i] = static_cast<int32_t>(rng_u32(7, stream, i) % n);
  return ints({count}, v);
}

// Runs fn on inputs moved to dev (those flagged differentiable require grad); returns the output
// and the gradients of L = sum(out * r).
std::vector<Tensor> through_autograd(Device dev, const std::function<ag::Var(const std::vector<ag::Var>&)>& fn,
                                     const std::vector<Tensor>& inputs, const std::vector<bool>& diff) {
  std::vector<ag::Var> vars;
  for (size_t i = 0; i < inputs.size(); ++i) vars.emplace_back(on(inputs[i], dev), diff[i]);
  ag::Var out = fn(vars);
  std::vector<Tensor> res = {host(out.value())};
  if (out.value().numel() == 0) return res;
  Tensor r = random_tensor(out.shape(), 999);
  ag::backward(ag::sum(ag::mul(out, ag::Var(on(r, dev)))));
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (!diff[i]) continue;
    res.push_back(vars[i].grad().defined() ? host(vars[i].grad()) : Tensor::zeros(inputs[i].shape(), DType::kF32));
  }
  return res;
}

struct Registrar {
  Registrar(const char* op, const char* what, Tolerance tol, std::function<std::vector<Tensor>(Device)> run) {
    cases().push_back({op, what, tol, std::move(run)});
  }
};
#define CMOE_CAT2_(a, b) a##b
#define CMOE_CAT_(a, b) CMOE_CAT2_(a, b)
#define CUDA_CASE(op, what, tol, ...) \
  static Registrar CMOE_CAT_(case_, __LINE__)(#op, what, tol, __VA_ARGS__)
// A differentiable case through autograd.
#define DIFF_CASE(op, what, tol, fn, inputs, diff)                                              \
  CUDA_CASE(op, what, tol, [](Device d) { return through_autograd(d, fn, inputs, diff); })

constexpr Tolerance kF32{1e-4, 1e-5};
constexpr Tolerance kReduce{1e-4, 1e-4};  // sums over many terms in another order
constexpr Tolerance kBF16{2e-3, 1e-3};    // bf16 operands, f32 accumulation in another order

// ---- elementwise ----
DIFF_CASE(add, "(3, 5)", kF32, [](auto& v) { return ag::add(v[0], v[1]); },
          (std::vector<Tensor>{random_tensor({3, 5}, 1), random_tensor({3, 5}, 2)}), (std::vector<bool>{true, true}));
DIFF_CASE(add, "empty", kF32, [](auto& v) { return ag::add(v[0], v[1]); },
          (std::vector<Tensor>{random_tensor({0, 5}, 1), random_tensor({0, 5}, 2)}), (std::vector<bool>{true, true}));
DIFF_CASE(mul, "(4, 33)", kF32, [](auto& v) { return ag::mul(v[0], v[1]); },
          (std::vector<Tensor>{random_tensor({4, 33}, 3), random_tensor({4, 33}, 4)}), (std::vector<bool>{true, true}));
DIFF_CASE(scale, "(1, 7)", kF32, [](auto& v) { return ag::scale(v[0], -1.5f); },
          (std::vector<Tensor>{random_tensor({1, 7}, 5)}), (std::vector<bool>{true}));
DIFF_CASE(scale_rows, "(6, 9)", kReduce, [](auto& v) { return ag::scale_rows(v[0], v[1]); },
          (std::vector<Tensor>{random_tensor({6, 9}, 6), random_tensor({6}, 7)}), (std::vector<bool>{true, true}));
DIFF_CASE(add_bias, "(300, 5)", kReduce, [](auto& v) { return ag::add_bias(v[0], v[1]); },
          (std::vector<Tensor>{random_tensor({300, 5}, 8), random_tensor({5}, 9)}), (std::vector<bool>{true, true}));
DIFF_CASE(sum, "(1000, 3)", kReduce, [](auto& v) { return ag::sum(v[0]); },
          (std::vector<Tensor>{random_tensor({1000, 3}, 10)}), (std::vector<bool>{true}));
DIFF_CASE(sum, "empty", kReduce, [](auto& v) { return ag::sum(v[0]); },
          (std::vector<Tensor>{random_tensor({0}, 10)}), (std::vector<bool>{false}));

// ---- network ops ----
DIFF_CASE(embedding, "ids repeat", kReduce, [](auto& v) { return ag::embedding(v[0], on(random_ids(64, 11, 3), v[0].value().device())); },
          (std::vector<Tensor>{random_tensor({11, 6}, 11)}), (std::vector<bool>{true}));
DIFF_CASE(rmsnorm, "(70, 300)", kReduce, [](auto& v) { return ag::rmsnorm(v[0], v[1], 1e-5f); },
          (std::vector<Tensor>{random_tensor({70, 300}, 12), random_tensor({300}, 13)}), (std::vector<bool>{true, true}));
DIFF_CASE(rmsnorm, "one row", kReduce, [](auto& v) { return ag::rmsnorm(v[0], v[1], 1e-5f); },
          (std::vector<Tensor>{random_tensor({1, 8}, 12), random_tensor({8}, 13)}), (std::vector<bool>{true, true}));
DIFF_CASE(rope, "(2, 17, 3, 64) pos0 5", kF32, [](auto& v) { return ag::rope(v[0], 10000.0f, 5); },
          (std::vector<Tensor>{random_tensor({2, 17, 3, 64}, 14)}), (std::vector<bool>{true}));
DIFF_CASE(swiglu, "(5, 77)", kF32, [](auto& v) { return ag::swiglu(v[0], v[1]); },
          (std::vector<Tensor>{random_tensor({5, 77}, 15, 2.0f), random_tensor({5, 77}, 16)}), (std::vector<bool>{true, true}));
DIFF_CASE(softmax, "(33, 64)", kF32, [](auto& v) { return ag::softmax(v[0]); },
          (std::vector<Tensor>{random_tensor({33, 64}, 17, 3.0f)}), (std::vector<bool>{true}));
DIFF_CASE(softmax, "(2, 300)", kF32, [](auto& v) { return ag::softmax(v[0]); },
          (std::vector<Tensor>{random_tensor({2, 300}, 17)}), (std::vector<bool>{true}));
DIFF_CASE(topk, "(20, 16) k 4", kF32, [](auto& v) { return ag::topk(v[0], 4).values; },
          (std::vector<Tensor>{random_tensor({20, 16}, 18)}), (std::vector<bool>{true}));
DIFF_CASE(gather_rows, "repeats", kReduce, [](auto& v) { return ag::gather_rows(v[0], on(random_ids(50, 7, 4), v[0].value().device())); },
          (std::vector<Tensor>{random_tensor({7, 12}, 19)}), (std::vector<bool>{true}));
DIFF_CASE(scatter_add_rows, "colliding", kReduce,
          [](auto& v) { return ag::scatter_add_rows(v[0], on(random_ids(40, 6, 5), v[0].value().device()), v[1], 6); },
          (std::vector<Tensor>{random_tensor({40, 10}, 20), random_tensor({40}, 21)}), (std::vector<bool>{true, true}));
DIFF_CASE(scatter_add_rows, "empty", kReduce,
          [](auto& v) { return ag::scatter_add_rows(v[0], on(Tensor::empty({0}, DType::kI32), v[0].value().device()), v[1], 3); },
          (std::vector<Tensor>{random_tensor({0, 4}, 20), random_tensor({0}, 21)}), (std::vector<bool>{false, false}));

// ---- matmuls ----
DIFF_CASE(linear, "f32 (37, 48) x (20, 48)", kReduce, [](auto& v) { return ag::linear(v[0], v[1]); },
          (std::vector<Tensor>{random_tensor({37, 48}, 22), random_tensor({20, 48}, 23)}), (std::vector<bool>{true, true}));
DIFF_CASE(linear, "bf16", kBF16, [](auto& v) { return ag::linear(v[0], v[1], DType::kBF16); },
          (std::vector<Tensor>{random_tensor({37, 48}, 22), random_tensor({20, 48}, 23)}), (std::vector<bool>{true, true}));

// Segments 0, 13, 0, 1, 50 rows: empty and very uneven experts.
std::shared_ptr<const std::vector<int64_t>> uneven() {
  return std::make_shared<const std::vector<int64_t>>(std::vector<int64_t>{0, 0, 13, 13, 14, 64});
}
DIFF_CASE(grouped_linear, "f32 uneven and empty groups", kReduce,
          [](auto& v) { return ag::grouped_linear(v[0], v[1], uneven()); },
          (std::vector<Tensor>{random_tensor({64, 24}, 24), random_tensor({5, 40, 24}, 25)}), (std::vector<bool>{true, true}));
DIFF_CASE(grouped_linear, "bf16 uneven and empty groups", kBF16,
          [](auto& v) { return ag::grouped_linear(v[0], v[1], uneven(), DType::kBF16); },
          (std::vector<Tensor>{random_tensor({64, 24}, 24), random_tensor({5, 40, 24}, 25)}), (std::vector<bool>{true, true}));
DIFF_CASE(grouped_linear, "no rows", kReduce,
          [](auto& v) { return ag::grouped_linear(v[0], v[1], std::make_shared<const std::vector<int64_t>>(4, 0)); },
          (std::vector<Tensor>{random_tensor({0, 8}, 24), random_tensor({3, 6, 8}, 25)}), (std::vector<bool>{false, false}));

// ---- fused ops ----
DIFF_CASE(attention, "(2, 100, 3, 64)", kReduce,
          [](auto& v) { return ag::attention(v[0], v[1], v[2], 0.125f); },
          (std::vector<Tensor>{random_tensor({2, 100, 3, 64}, 26), random_tensor({2, 100, 3, 64}, 27),
                               random_tensor({2, 100, 3, 64}, 28)}),
          (std::vector<bool>{true, true, true}));
DIFF_CASE(attention, "head dim 96, T = 1", kReduce,
          [](auto& v) { return ag::attention(v[0], v[1], v[2], 0.1f); },
          (std::vector<Tensor>{random_tensor({3, 1, 2, 96}, 26), random_tensor({3, 1, 2, 96}, 27),
                               random_tensor({3, 1, 2, 96}, 28)}),
          (std::vector<bool>{true, true, true}));
DIFF_CASE(cross_entropy, "f32 with ignored rows", kReduce,
          [](auto& v) {
            std::vector<int32_t> t(70);
            for (int i = 0; i < 70; ++i) t[i] = i % 9 == 0 ? -1 : static_cast<int32_t>(rng_u32(3, 30, i) % 500);
            return ag::cross_entropy(v[0], v[1], on(ints({70}, t), v[0].value().device()), 16);
          },
          (std::vector<Tensor>{random_tensor({70, 32}, 29), random_tensor({500, 32}, 30)}), (std::vector<bool>{true, true}));
DIFF_CASE(cross_entropy, "bf16", kBF16,
          [](auto& v) {
            std::vector<int32_t> t(70);
            for (int i = 0; i < 70; ++i) t[i] = static_cast<int32_t>(rng_u32(3, 31, i) % 500);
            return ag::cross_entropy(v[0], v[1], on(ints({70}, t), v[0].value().device()), 16, DType::kBF16);
          },
          (std::vector<Tensor>{random_tensor({70, 32}, 29), random_tensor({500, 32}, 30)}), (std::vector<bool>{true, true}));

// ---- routing ----
Tensor positive(const Shape& s, uint64_t stream) {
  Tensor t = random_tensor(s, stream, 0.2f);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = 0.1f + std::fabs(t.data<float>()[i]);
  return t;
}
Tensor routing_idx() { return ints({4, 2}, {0, 3, 2, -1, 1, 0, 3, 2}); }
DIFF_CASE(routing_weights, "renorm, an empty slot", kF32,
          [](auto& v) { return ag::routing_weights(v[0], on(routing_idx(), v[0].value().device()), true); },
          (std::vector<Tensor>{positive({4, 4}, 40)}), (std::vector<bool>{true}));
DIFF_CASE(routing_weights, "plain", kF32,
          [](auto& v) { return ag::routing_weights(v[0], on(routing_idx(), v[0].value().device()), false); },
          (std::vector<Tensor>{positive({4, 4}, 40)}), (std::vector<bool>{true}));
DIFF_CASE(z_loss, "(200, 64)", kReduce, [](auto& v) { return ag::z_loss(v[0]); },
          (std::vector<Tensor>{random_tensor({200, 64}, 42)}), (std::vector<bool>{true}));

// Router probabilities with distinct values (ties are covered by the CPU tests of the rules).
Tensor probs(int64_t n, int64_t e, uint64_t stream) {
  Tensor logits = random_tensor({n, e}, stream, 2.0f);
  Tensor p = Tensor::empty({n, e}, DType::kF32);
  ops::softmax_forward(p, logits);
  return p;
}

CUDA_CASE(to_compute, "f32 -> bf16", kF32, [](Device d) {
  Tensor x = random_tensor({3, 1000}, 50);
  return std::vector<Tensor>{host(ag::kernels(d).to_compute(on(x, d), DType::kBF16)).to_dtype(DType::kF32)};
});
CUDA_CASE(router_topk, "bias and disable_top1", kF32, [](Device d) {
  Tensor p = on(probs(300, 64, 51), d), bias = on(random_tensor({64}, 52, 0.01f), d);
  Tensor a = Tensor::empty({300, 6}, DType::kI32, d), b = Tensor::empty({300, 6}, DType::kI32, d);
  ag::kernels(d).router_topk(a, p, bias, false);
  ag::kernels(d).router_topk(b, p, Tensor(), true);
  return std::vector<Tensor>{host(a).to_dtype(DType::kF32), host(b).to_dtype(DType::kF32)};
});
CUDA_CASE(router_topp, "p 0.4 and disable_top1", kF32, [](Device d) {
  Tensor p = on(probs(300, 16, 53), d);
  return std::vector<Tensor>{host(ag::kernels(d).router_topp(p, 0.4f, false)).to_dtype(DType::kF32),
                             host(ag::kernels(d).router_topp(p, 0.4f, true)).to_dtype(DType::kF32)};
});
CUDA_CASE(router_hash, "k 3 of 16", kF32, [](Device d) {
  Tensor idx = Tensor::empty({500, 3}, DType::kI32, d);
  ag::kernels(d).router_hash(idx, on(random_ids(500, 50000, 6), d), 16, 1234);
  return std::vector<Tensor>{host(idx).to_dtype(DType::kF32)};
});
CUDA_CASE(expert_load, "uneven with empty slots", kReduce, [](Device d) {
  std::vector<int32_t> v(1000);
  for (int i = 0; i < 1000; ++i) v[i] = i % 11 == 0 ? -1 : static_cast<int32_t>(rng_u32(5, 54, i) % 3) * 3;
  Tensor counts = Tensor::empty({9}, DType::kI64, d), psum = Tensor::empty({9}, DType::kF32, d);
  ag::kernels(d).expert_load(counts, psum, on(ints({500, 2}, v), d), on(probs(500, 9, 55), d));
  return std::vector<Tensor>{host(counts).to_dtype(DType::kF32), host(psum)};
});
CUDA_CASE(dispatch_sort, "capacity drops, empty experts", kF32, [](Device d) {
  // Experts 0, 3, 6 chosen (others empty), capacity 200 of ~330 pairs each.
  std::vector<int32_t> v(1000);
  for (int i = 0; i < 1000; ++i) v[i] = i % 13 == 0 ? -1 : static_cast<int32_t>(rng_u32(5, 56, i) % 3) * 3;
  std::vector<int64_t> counts(8, 0);
  for (int32_t e : v)
    if (e >= 0) ++counts[e];
  std::vector<int64_t> offsets(9, 0);
  for (int e = 0; e < 8; ++e) offsets[e + 1] = offsets[e] + std::min<int64_t>(counts[e], 200);
  Tensor tok = Tensor::empty({offsets[8]}, DType::kI32, d), pair = Tensor::empty({offsets[8]}, DType::kI32, d);
  ag::kernels(d).dispatch_sort(tok, pair, on(ints({500, 2}, v), d), offsets, 200);
  return std::vector<Tensor>{host(tok).to_dtype(DType::kF32), host(pair).to_dtype(DType::kF32)};
});

// "" when a and b agree within tol; else the first disagreement.
std::string compare(const Tensor& a, const Tensor& b, const Tolerance& tol) {
  if (!(a.shape() == b.shape())) return "shape " + a.str() + " vs " + b.str();
  std::vector<float> x = a.to_floats(), y = b.to_floats();
  double scale = 0;
  for (float v : x) scale = std::max(scale, static_cast<double>(std::fabs(v)));
  for (size_t i = 0; i < x.size(); ++i) {
    const bool both_nan = std::isnan(x[i]) && std::isnan(y[i]);
    if (!both_nan && !(std::fabs(static_cast<double>(x[i]) - y[i]) <= tol.atol + tol.rtol * scale)) {
      return "element " + std::to_string(i) + ": cpu " + std::to_string(x[i]) + ", cuda " + std::to_string(y[i]);
    }
  }
  return "";
}

TEST(CudaOpHarness, EveryRowHasCases) {
  std::set<std::string> covered;
  for (const Case& c : cases()) covered.insert(c.op);
  for (const ag::OpInfo& op : ag::op_table()) EXPECT_TRUE(covered.count(op.name)) << op.name << " has no CUDA case";
  std::set<std::string> known;
  for (const ag::OpInfo& op : ag::op_table()) known.insert(op.name);
  for (const std::string& n : covered) EXPECT_TRUE(known.count(n)) << n << " is not in the op table";
}

TEST(CudaOpHarness, CudaMatchesCpu) {
  const absl::StatusOr<int> gpus = cuda::device_count();
  if (!gpus.ok()) GTEST_SKIP() << "skipped: no GPU (" << std::string(gpus.status().message()) << ")";
  ASSERT_TRUE(cuda::init(0).ok());
  int checked = 0;
  for (const Case& c : cases()) {
    SCOPED_TRACE(c.op + ": " + c.what);
    const std::vector<Tensor> cpu = c.run(kCPU), gpu = c.run(cuda_device(0));
    ASSERT_EQ(cpu.size(), gpu.size());
    for (size_t i = 0; i < cpu.size(); ++i) {
      const std::string err = compare(cpu[i], gpu[i], c.tol);
      EXPECT_EQ(err, "") << (i == 0 ? "output" : "result " + std::to_string(i));
    }
    ++checked;
  }
  std::printf("cuda op harness: %d cases over %d rows agree with the CPU\n", checked, ag::kNumOps);
}

}  // namespace
}  // namespace cmoe
