// multi_tensor.cpp — chunk lists and the multi-tensor AdamW / squared-norm launches
// (see multi_tensor.h).
#include "core/cuda/multi_tensor.h"

#include <cstring>

#include "core/cuda/context.h"
#include "core/cuda/launch_geometry.h"

namespace cmoe::cuda {

ChunkList multi_tensor_chunks(std::span<const int64_t> numels) {
  ChunkList c;
  for (size_t t = 0; t < numels.size(); ++t) {
    CMOE_CHECK(numels[t] >= 0, "multi_tensor_chunks: tensor ", t, " has ", numels[t], " elements");
    for (int64_t s = 0; s < numels[t]; s += cuda_geom::kMultiTensorChunk) {
      c.tensor.push_back(static_cast<int64_t>(t));
      c.start.push_back(s);
      c.len.push_back(std::min(cuda_geom::kMultiTensorChunk, numels[t] - s));
    }
  }
  return c;
}

namespace {

// One device buffer holding, in order: `lists` pointer arrays of n entries, n floats (or none),
// then the chunk list's three i64 arrays. Returns the buffer and the device address of each part.
struct Packed {
  Tensor buf;
  std::vector<char*> lists;
  char* floats = nullptr;
  char *tensor = nullptr, *start = nullptr, *len = nullptr;
};

Packed pack(Device dev, const std::vector<std::vector<const void*>>& lists, std::span<const float> floats,
            const ChunkList& chunks) {
  const size_t n = lists.empty() ? 0 : lists[0].size();
  const size_t ptr_bytes = n * sizeof(void*);
  const size_t float_bytes = (floats.size() * sizeof(float) + 7) / 8 * 8;
  const size_t chunk_bytes = static_cast<size_t>(chunks.size()) * sizeof(int64_t);
  std::vector<char> host(lists.size() * ptr_bytes + float_bytes + 3 * chunk_bytes, 0);
  size_t at = 0;
  for (const auto& l : lists) {
    if (ptr_bytes > 0) std::memcpy(host.data() + at, l.data(), ptr_bytes);
    at += ptr_bytes;
  }
  if (!floats.empty()) std::memcpy(host.data() + at, floats.data(), floats.size() * sizeof(float));
  at += float_bytes;
  for (const std::vector<int64_t>* v : {&chunks.tensor, &chunks.start, &chunks.len}) {
    if (chunk_bytes > 0) std::memcpy(host.data() + at, v->data(), chunk_bytes);
    at += chunk_bytes;
  }
  Packed p;
  p.buf = scratch(dev, host.size());
  copy_bytes(p.buf.raw_data(), dev, host.data(), kCPU, host.size());
  char* base = static_cast<char*>(p.buf.raw_data());
  at = 0;
  for (size_t i = 0; i < lists.size(); ++i, at += ptr_bytes) p.lists.push_back(base + at);
  p.floats = base + at;
  at += float_bytes;
  p.tensor = base + at;
  p.start = base + at + chunk_bytes;
  p.len = base + at + 2 * chunk_bytes;
  return p;
}

Device common_device(std::span<const Tensor> ts, const char* op) {
  CMOE_CHECK(!ts.empty(), op, ": no tensors");
  const Device d = ts[0].device();
  CMOE_CHECK(d.is_cuda(), op, ": tensors on ", d.str());
  for (const Tensor& t : ts)
    CMOE_CHECK(t.device() == d && t.dtype() == DType::kF32, op, ": ", t.str(), " (want f32 on ", d.str(), ")");
  return d;
}

}  // namespace

void adamw_multi(std::span<const Tensor> params, std::span<const Tensor> exp_avg, std::span<const Tensor> exp_avg_sq,
                 std::span<const Tensor> grads, std::span<const float> decay_mul, const AdamWStep& step) {
  const size_t n = params.size();
  CMOE_CHECK(exp_avg.size() == n && exp_avg_sq.size() == n && grads.size() == n && decay_mul.size() == n,
             "adamw_multi: ", n, " params, ", exp_avg.size(), "/", exp_avg_sq.size(), " moments, ", grads.size(),
             " grads, ", decay_mul.size(), " decay factors");
  if (n == 0) return;
  const Device dev = common_device(params, "adamw_multi");
  std::vector<std::vector<const void*>> lists(4);
  std::vector<int64_t> numels;
  for (size_t i = 0; i < n; ++i) {
    const int64_t k = params[i].numel();
    for (const Tensor* t : std::initializer_list<const Tensor*>{&exp_avg[i], &exp_avg_sq[i], &grads[i]})
      CMOE_CHECK(t->device() == dev && t->dtype() == DType::kF32 && t->numel() == k, "adamw_multi: ", t->str(),
                 " for parameter ", params[i].str());
    lists[0].push_back(params[i].raw_data());
    lists[1].push_back(exp_avg[i].raw_data());
    lists[2].push_back(exp_avg_sq[i].raw_data());
    lists[3].push_back(grads[i].raw_data());
    numels.push_back(k);
  }
  const ChunkList chunks = multi_tensor_chunks(numels);
  if (chunks.size() == 0) return;
  use_device(dev);
  Packed p = pack(dev, lists, decay_mul, chunks);
  check(api().adamw_multi_f32(reinterpret_cast<float* const*>(p.lists[0]), reinterpret_cast<float* const*>(p.lists[1]),
                              reinterpret_cast<float* const*>(p.lists[2]),
                              reinterpret_cast<const float* const*>(p.lists[3]),
                              reinterpret_cast<const float*>(p.floats), reinterpret_cast<const int64_t*>(p.tensor),
                              reinterpret_cast<const int64_t*>(p.start), reinterpret_cast<const int64_t*>(p.len),
                              chunks.size(), step.beta1, step.beta2, step.eps, step.step_size, step.inv_sqrt_bc2,
                              step.grad_scale, compute_stream()),
        "adamw_multi_f32");
}

std::vector<double> sum_squares_multi(std::span<const Tensor> xs) {
  std::vector<double> out(xs.size(), 0.0);
  if (xs.empty()) return out;
  const Device dev = common_device(xs, "sum_squares_multi");
  std::vector<std::vector<const void*>> lists(1);
  std::vector<int64_t> numels;
  for (const Tensor& x : xs) {
    lists[0].push_back(x.raw_data());
    numels.push_back(x.numel());
  }
  const ChunkList chunks = multi_tensor_chunks(numels);
  if (chunks.size() == 0) return out;
  use_device(dev);
  Packed p = pack(dev, lists, {}, chunks);
  Tensor sums = scratch(dev, static_cast<size_t>(chunks.size()) * sizeof(double));
  check(api().sum_squares_multi_f32(static_cast<double*>(sums.raw_data()),
                                    reinterpret_cast<const float* const*>(p.lists[0]),
                                    reinterpret_cast<const int64_t*>(p.tensor), reinterpret_cast<const int64_t*>(p.start),
                                    reinterpret_cast<const int64_t*>(p.len), chunks.size(), compute_stream()),
        "sum_squares_multi_f32");
  std::vector<double> host(static_cast<size_t>(chunks.size()));
  copy_bytes(host.data(), kCPU, sums.raw_data(), dev, host.size() * sizeof(double));
  for (int64_t c = 0; c < chunks.size(); ++c) out[static_cast<size_t>(chunks.tensor[c])] += host[c];
  return out;
}

}  // namespace cmoe::cuda
