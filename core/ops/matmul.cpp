// matmul.cpp — dense and grouped matmul on CPU through oneDNN 2.6 matmul primitives, the
// primitive cache that keeps steady-state training free of primitive creation, and the
// measured matmul peak that MFU is reported against.
//
// Every product here is one 2-D problem C (m, n) = alpha * op(A) (m, k) @ op(B) (k, n) + beta * C
// on contiguous row-major storage; a transpose is a memory descriptor with swapped strides,
// never a copy. alpha is a oneDNN output scale and beta a sum post-op, both fixed in the
// primitive (callers use a handful of values, so keying the cache by them is cheap).
//
// Dense matmuls have fixed shapes in training, so their primitives have fixed dims (oneDNN
// picks its brgemm kernels). Grouped matmuls see new segment sizes every step, so the segment
// dim is a oneDNN runtime dim (DNNL_RUNTIME_DIM_VAL) and one primitive serves every size.
// History: on the 2-core Zen 4 machine an isolated benchmark (fixed offsets) ran f32 grouped
// products with transposed weights faster with one fixed-dim primitive per segment size
// (brgemm, 195 GFLOP/s at K=1024) than with the runtime dim (gemm:jit, 131), so f32 keyed
// primitives by segment size. In training every step brings new sizes, and creating their
// primitives (0.1-0.4 ms each, up to 16 per call) cost more than that: on the 2026-12-02 Intel
// (AMX) machine the runtime dim ran cpu-small's expert products at 77-78% of the peak in
// training against 61-65% keyed by size, and at 92-99% against 91-95% in the benchmark.
#include "core/ops/matmul.h"

#include <oneapi/dnnl/dnnl.hpp>

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <mutex>
#include <unordered_map>
#include <vector>

namespace cmoe::ops {

namespace {

using dnnl::memory;

constexpr int64_t kRuntime = -1;  // a dim supplied per call (the segment dim of grouped ops)

// One cached problem. m or k may be kRuntime; n never is.
struct GemmKey {
  int64_t m, n, k;
  bool trans_a, trans_b;
  DType dtype;  // of A and B; C is always f32
  float alpha, beta;
  bool operator==(const GemmKey&) const = default;
};

struct GemmKeyHash {
  size_t operator()(const GemmKey& key) const {
    uint32_t alpha_bits, beta_bits;
    std::memcpy(&alpha_bits, &key.alpha, 4);
    std::memcpy(&beta_bits, &key.beta, 4);
    size_t h = std::hash<int64_t>()(key.m);
    auto mix = [&h](uint64_t v) {
      h ^= std::hash<uint64_t>()(v) + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
    };
    mix(static_cast<uint64_t>(key.n));
    mix(static_cast<uint64_t>(key.k));
    mix((static_cast<uint64_t>(key.dtype) << 2) | (static_cast<uint64_t>(key.trans_a) << 1) |
        static_cast<uint64_t>(key.trans_b));
    mix((static_cast<uint64_t>(alpha_bits) << 32) | beta_bits);
    return h;
  }
};

dnnl::engine& cpu_engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

// oneDNN streams are not thread-safe; each calling thread gets its own over the one engine.
dnnl::stream& cpu_stream() {
  thread_local dnnl::stream stream(cpu_engine());
  return stream;
}

memory::data_type dnnl_dtype(DType t) {
  CMOE_CHECK(t == DType::kF32 || t == DType::kBF16, "matmul: unsupported dtype ", dtype_name(t));
  return t == DType::kF32 ? memory::data_type::f32 : memory::data_type::bf16;
}

memory::dim dnnl_dim(int64_t d) { return d == kRuntime ? DNNL_RUNTIME_DIM_VAL : d; }

// Logical (rows, cols) operand; stored as (rows, cols) row-major, or as (cols, rows) when
// `trans` (then the descriptor swaps the strides). A runtime dim makes its stride runtime too.
memory::desc operand_desc(int64_t rows, int64_t cols, bool trans, memory::data_type t) {
  memory::dims dims = {dnnl_dim(rows), dnnl_dim(cols)};
  memory::dims strides = trans ? memory::dims{1, dnnl_dim(rows)} : memory::dims{dnnl_dim(cols), 1};
  return memory::desc(dims, t, strides);
}

class PrimitiveCache {
 public:
  // The primitive for `key`, created on first use. Returned by value: a dnnl::matmul is a
  // shared handle, so the entry stays valid whatever the map does afterwards.
  dnnl::matmul get(const GemmKey& key) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = map_.find(key);
    if (it != map_.end()) return it->second;
    const memory::data_type t = dnnl_dtype(key.dtype);
    memory::desc a = operand_desc(key.m, key.k, key.trans_a, t);
    memory::desc b = operand_desc(key.k, key.n, key.trans_b, t);
    memory::desc c = operand_desc(key.m, key.n, false, memory::data_type::f32);
    dnnl::primitive_attr attr;
    if (key.alpha != 1.0f) attr.set_output_scales(0, {key.alpha});
    if (key.beta != 0.0f) {
      dnnl::post_ops po;
      po.append_sum(key.beta);
      attr.set_post_ops(po);
    }
    dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(a, b, c), attr, cpu_engine());
    return map_.emplace(key, dnnl::matmul(pd)).first->second;
  }

  int64_t size() {
    std::lock_guard<std::mutex> lock(mu_);
    return static_cast<int64_t>(map_.size());
  }

 private:
  std::mutex mu_;
  std::unordered_map<GemmKey, dnnl::matmul, GemmKeyHash> map_;
};

PrimitiveCache& primitive_cache() {
  static PrimitiveCache* cache = new PrimitiveCache();  // never destroyed: used until exit
  return *cache;
}

// c (m, n) = alpha * op(a) (m, k) @ op(b) (k, n) + beta * c with the actual m, k of this call
// (key.m / key.k are these or kRuntime).
void run_gemm(const GemmKey& key, int64_t m, int64_t k, float* c, const void* a, const void* b) {
  const int64_t n = key.n;
  if (m == 0 || n == 0) return;
  if (k == 0) {  // empty reduction: op(a) @ op(b) is zero
    if (key.beta == 0.0f) {
      std::memset(c, 0, static_cast<size_t>(m * n) * sizeof(float));
    } else if (key.beta != 1.0f) {
      for (int64_t i = 0; i < m * n; ++i) c[i] *= key.beta;
    }
    return;
  }
  dnnl::matmul prim = primitive_cache().get(key);
  const memory::data_type t = dnnl_dtype(key.dtype);
  dnnl::engine& engine = cpu_engine();
  memory am(operand_desc(m, k, key.trans_a, t), engine, const_cast<void*>(a));
  memory bm(operand_desc(k, n, key.trans_b, t), engine, const_cast<void*>(b));
  memory cm(operand_desc(m, n, false, memory::data_type::f32), engine, c);
  dnnl::stream& stream = cpu_stream();
  prim.execute(stream, {{DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, bm}, {DNNL_ARG_DST, cm}});
  stream.wait();
}

void check_operand(const Tensor& t, const char* what, const char* op) {
  CMOE_CHECK(t.defined(), op, ": ", what, " is undefined");
  CMOE_CHECK(t.device().is_cpu(), op, ": ", what, " must be on the CPU, got ", t.str());
}

void check_offsets(std::span<const int64_t> offsets, int64_t groups, int64_t rows, const char* op) {
  CMOE_CHECK(static_cast<int64_t>(offsets.size()) == groups + 1, op, ": ", offsets.size(),
             " offsets for ", groups, " groups (need groups + 1)");
  CMOE_CHECK(offsets[0] == 0 && offsets[groups] == rows, op, ": offsets must run from 0 to ",
             rows, ", got ", offsets[0], " .. ", offsets[groups]);
  for (int64_t g = 0; g < groups; ++g) {
    CMOE_CHECK(offsets[g] <= offsets[g + 1], op, ": offsets decrease at group ", g, " (",
               offsets[g], " > ", offsets[g + 1], ")");
  }
}

const char* byte_ptr(const Tensor& t) { return static_cast<const char*>(t.raw_data()); }

// Runs fn(g) for every non-empty group (every group with include_empty). With more than one
// thread and more than one group, the groups are spread over the threads (largest first, each
// taken by the next free thread) and each product runs single-threaded inside the parallel
// region: on 2 cores, cpu-small's expert products ran at 77-78% of the f32 peak spread this way
// against 74-76% one after another on both threads (bf16: 24-28% against 21-25%). A group's
// result is bit for bit the same either way (tests/ops/linear_test.cpp,
// GroupedMatmul.ResultsDoNotDependOnTheSpread), so nothing depends on the schedule or on how many
// experts a rank holds.
template <typename Fn>
void for_each_group(std::span<const int64_t> offsets, bool include_empty, Fn fn) {
  const int64_t groups = static_cast<int64_t>(offsets.size()) - 1;
  std::vector<int64_t> order;
  order.reserve(static_cast<size_t>(groups));
  for (int64_t g = 0; g < groups; ++g)
    if (include_empty || offsets[g + 1] > offsets[g]) order.push_back(g);
  if (omp_get_max_threads() <= 1 || order.size() <= 1 || omp_in_parallel()) {
    for (int64_t g : order) fn(g);
    return;
  }
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
    return offsets[a + 1] - offsets[a] > offsets[b + 1] - offsets[b];
  });
  const int64_t n = static_cast<int64_t>(order.size());
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t i = 0; i < n; ++i) fn(order[static_cast<size_t>(i)]);
}

}  // namespace

void matmul(Tensor& c, const Tensor& a, const Tensor& b, bool trans_a, bool trans_b, float alpha,
            float beta) {
  check_operand(a, "a", "matmul");
  check_operand(b, "b", "matmul");
  check_operand(c, "c", "matmul");
  CMOE_CHECK(a.rank() == 2 && b.rank() == 2 && c.rank() == 2, "matmul: need 2-D a, b, c, got ",
             a.str(), ", ", b.str(), ", ", c.str());
  CMOE_CHECK(a.dtype() == b.dtype(), "matmul: a ", a.str(), " and b ", b.str(), " differ in dtype");
  CMOE_CHECK(c.dtype() == DType::kF32, "matmul: c must be f32, got ", c.str());
  const int64_t m = trans_a ? a.dim(1) : a.dim(0), k = trans_a ? a.dim(0) : a.dim(1);
  const int64_t kb = trans_b ? b.dim(1) : b.dim(0), n = trans_b ? b.dim(0) : b.dim(1);
  CMOE_CHECK(k == kb && c.dim(0) == m && c.dim(1) == n, "matmul: shapes do not fit: a ", a.str(),
             (trans_a ? "^T" : ""), ", b ", b.str(), (trans_b ? "^T" : ""), ", c ", c.str());
  run_gemm(GemmKey{m, n, k, trans_a, trans_b, a.dtype(), alpha, beta}, m, k, c.data<float>(),
           a.raw_data(), b.raw_data());
}

void grouped_matmul(Tensor& c, const Tensor& a, const Tensor& w, std::span<const int64_t> offsets,
                    bool trans_w) {
  check_operand(a, "a", "grouped_matmul");
  check_operand(w, "w", "grouped_matmul");
  check_operand(c, "c", "grouped_matmul");
  CMOE_CHECK(a.rank() == 2 && w.rank() == 3 && c.rank() == 2,
             "grouped_matmul: need a (R, K), w (G, K, N), c (R, N), got ", a.str(), ", ", w.str(),
             ", ", c.str());
  CMOE_CHECK(a.dtype() == w.dtype(), "grouped_matmul: a ", a.str(), " and w ", w.str(),
             " differ in dtype");
  CMOE_CHECK(c.dtype() == DType::kF32, "grouped_matmul: c must be f32, got ", c.str());
  const int64_t groups = w.dim(0), rows = a.dim(0), k = a.dim(1);
  const int64_t n = trans_w ? w.dim(1) : w.dim(2);
  CMOE_CHECK((trans_w ? w.dim(2) : w.dim(1)) == k && c.dim(0) == rows && c.dim(1) == n,
             "grouped_matmul: shapes do not fit: a ", a.str(), ", w ", w.str(),
             (trans_w ? "^T" : ""), ", c ", c.str());
  check_offsets(offsets, groups, rows, "grouped_matmul");

  // The segment dim is a runtime dim: one primitive serves every segment size (see top of file).
  const size_t es = dtype_size(a.dtype());
  float* cp = c.data<float>();
  for_each_group(offsets, false, [&](int64_t g) {
    const int64_t r0 = offsets[g], seg = offsets[g + 1] - offsets[g];
    const GemmKey key{kRuntime, n, k, false, trans_w, a.dtype(), 1.0f, 0.0f};
    run_gemm(key, seg, k, cp + r0 * n, byte_ptr(a) + static_cast<size_t>(r0 * k) * es,
             byte_ptr(w) + static_cast<size_t>(g * k * n) * es);
  });
}

void grouped_matmul_grad_w(Tensor& dw, const Tensor& a, const Tensor& dc,
                           std::span<const int64_t> offsets, bool trans_w, bool accumulate) {
  check_operand(a, "a", "grouped_matmul_grad_w");
  check_operand(dc, "dc", "grouped_matmul_grad_w");
  check_operand(dw, "dw", "grouped_matmul_grad_w");
  CMOE_CHECK(a.rank() == 2 && dc.rank() == 2 && dw.rank() == 3,
             "grouped_matmul_grad_w: need a (R, K), dc (R, N), dw (G, K, N), got ", a.str(), ", ",
             dc.str(), ", ", dw.str());
  CMOE_CHECK(a.dtype() == dc.dtype(), "grouped_matmul_grad_w: a ", a.str(), " and dc ", dc.str(),
             " differ in dtype");
  CMOE_CHECK(dw.dtype() == DType::kF32, "grouped_matmul_grad_w: dw must be f32, got ", dw.str());
  const int64_t groups = dw.dim(0), rows = a.dim(0), k = a.dim(1), n = dc.dim(1);
  CMOE_CHECK(dc.dim(0) == rows && dw.dim(1) == (trans_w ? n : k) && dw.dim(2) == (trans_w ? k : n),
             "grouped_matmul_grad_w: shapes do not fit: a ", a.str(), ", dc ", dc.str(), ", dw ",
             dw.str(), (trans_w ? " (transposed)" : ""));
  check_offsets(offsets, groups, rows, "grouped_matmul_grad_w");

  // !trans_w: dw[g] (K, N) = a_g^T @ dc_g;  trans_w: dw[g] (N, K) = dc_g^T @ a_g. The segment
  // length is the reduction dim; an empty segment leaves beta * dw[g] (zero unless accumulating).
  const float beta = accumulate ? 1.0f : 0.0f;
  const int64_t m_out = trans_w ? n : k, n_out = trans_w ? k : n;
  const GemmKey key{m_out, n_out, kRuntime, true, false, a.dtype(), 1.0f, beta};
  const size_t es = dtype_size(a.dtype());
  float* dwp = dw.data<float>();
  for_each_group(offsets, true, [&](int64_t g) {
    const int64_t r0 = offsets[g], seg = offsets[g + 1] - offsets[g];
    const char* ap = byte_ptr(a) + static_cast<size_t>(r0 * k) * es;
    const char* dcp = byte_ptr(dc) + static_cast<size_t>(r0 * n) * es;
    run_gemm(key, m_out, seg, dwp + g * k * n, trans_w ? dcp : ap, trans_w ? ap : dcp);
  });
}

int64_t matmul_primitive_count() { return primitive_cache().size(); }

double matmul_rate_gflops(DType dtype, double seconds) {
  CMOE_CHECK(dtype == DType::kF32 || dtype == DType::kBF16, "matmul_rate_gflops: dtype ",
             dtype_name(dtype));
  // Square size ~ 1024 * cbrt(threads / 2), a multiple of 256: large enough that the product
  // runs at the kernel's peak, small enough that ~0.3 s holds dozens of repeats, so the best
  // one is clean even on a machine other processes share (1024: ~10 ms f32 on 2 cores).
  const double threads = std::max(1, omp_get_max_threads());
  const int64_t kSize =
      std::max<int64_t>(256, std::llround(1024.0 * std::cbrt(threads / 2.0) / 256.0) * 256);
  Tensor a = Tensor::full({kSize, kSize}, 0.5f).to_dtype(dtype);
  Tensor b = Tensor::full({kSize, kSize}, 0.25f).to_dtype(dtype);
  Tensor c = Tensor::empty({kSize, kSize}, DType::kF32);
  matmul(c, a, b, false, false);  // warm-up: primitive creation, first touch of c
  using Clock = std::chrono::steady_clock;
  const Clock::time_point start = Clock::now();
  double best = 0;
  do {
    const Clock::time_point t0 = Clock::now();
    matmul(c, a, b, false, false);
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    best = std::max(best, 2.0 * kSize * kSize * kSize / s * 1e-9);
  } while (std::chrono::duration<double>(Clock::now() - start).count() < seconds);
  return best;
}

double matmul_peak_gflops(DType dtype) {
  CMOE_CHECK(dtype == DType::kF32 || dtype == DType::kBF16, "matmul_peak_gflops: dtype ",
             dtype_name(dtype));
  static std::mutex mu;
  static double cached[kNumDTypes] = {};
  std::lock_guard<std::mutex> lock(mu);
  double& peak = cached[static_cast<int>(dtype)];
  if (peak <= 0) peak = matmul_rate_gflops(dtype, 0.3);
  return peak;
}

}  // namespace cmoe::ops

namespace cmoe::ops {

double memory_bandwidth_gbs() {
  static std::mutex mu;
  static double cached = 0;
  std::lock_guard<std::mutex> lock(mu);
  if (cached > 0) return cached;
  // Larger than any last-level cache seen on the machines cmoe runs on, so the copy streams
  // from and to memory.
  constexpr int64_t kFloats = int64_t{32} << 20;  // 128 MiB
  constexpr double kSeconds = 0.3;
  Tensor a = Tensor::full({kFloats}, 1.0f), b = Tensor::full({kFloats}, 0.0f);
  const float* src = a.data<float>();
  float* dst = b.data<float>();
  auto copy = [&] {
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < kFloats; c += 1 << 16) {
      std::memcpy(dst + c, src + c, static_cast<size_t>(std::min<int64_t>(1 << 16, kFloats - c)) * sizeof(float));
    }
  };
  copy();
  using Clock = std::chrono::steady_clock;
  const Clock::time_point start = Clock::now();
  double best = 0;
  do {
    const Clock::time_point t0 = Clock::now();
    copy();
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    best = std::max(best, 2.0 * kFloats * sizeof(float) / s * 1e-9);
  } while (std::chrono::duration<double>(Clock::now() - start).count() < kSeconds);
  cached = best;
  return cached;
}

}  // namespace cmoe::ops
