// grad_reducer.cpp — bucketed data-parallel gradient reduction and ZeRO-1 (see grad_reducer.h).
#include "parallel/grad_reducer.h"

#include <algorithm>
#include <cstring>

#include "autograd/op_table.h"
#include "core/profiler.h"
#include "parallel/process_groups.h"

namespace cmoe::parallel {

std::vector<GradBucket> grad_bucket_plan(std::span<const int64_t> numel, const std::vector<bool>& expert,
                                         int dp_size, int edp_size, int64_t bucket_elems, bool distributed) {
  CMOE_CHECK(numel.size() == expert.size() && dp_size >= 1 && edp_size >= 1, "grad_bucket_plan: ", numel.size(),
             " sizes, ", expert.size(), " flags, groups ", dp_size, " / ", edp_size);
  std::vector<GradBucket> buckets;
  // Reverse creation order approximates the order backward completes the gradients (the head
  // first, the embedding last). A bucket holds parameters of one group only.
  int open[2] = {-1, -1};  // the bucket being filled, per group (replicated, expert)
  for (size_t i = numel.size(); i-- > 0;) {
    const int g = expert[i] ? 1 : 0;
    if (open[g] < 0 || buckets[open[g]].elems + numel[i] > bucket_elems) {
      open[g] = static_cast<int>(buckets.size());
      buckets.emplace_back();
      buckets.back().expert = g == 1;
    }
    buckets[open[g]].params.push_back(i);
    buckets[open[g]].elems += numel[i];
  }
  if (!distributed) return buckets;
  for (GradBucket& b : buckets) {
    const int size = b.expert ? edp_size : dp_size;
    // Owners balanced by size (balance_by_size); then the bucket laid out owner by owner, each
    // owner's chunk padded to the largest.
    std::vector<int64_t> sizes;
    for (size_t i : b.params) sizes.push_back(numel[i]);
    const std::vector<int> owner = balance_by_size(sizes, size);
    std::vector<int64_t> load(static_cast<size_t>(size), 0);
    for (size_t k = 0; k < b.params.size(); ++k) load[owner[k]] += sizes[k];
    b.chunk = *std::max_element(load.begin(), load.end());
    std::vector<size_t> laid;
    std::vector<int> laid_owner;
    for (int r = 0; r < size; ++r) {
      int64_t at = static_cast<int64_t>(r) * b.chunk;
      for (size_t k = 0; k < b.params.size(); ++k) {
        if (owner[k] != r) continue;
        laid.push_back(b.params[k]);
        laid_owner.push_back(r);
        b.offset.push_back(at);
        at += sizes[k];
      }
    }
    b.params = std::move(laid);
    b.owner = std::move(laid_owner);
    b.elems = b.chunk * size;
  }
  return buckets;
}

GradReducer::GradReducer(std::vector<Param>* params, Communicator* dp, Communicator* edp,
                         int divisor, int64_t bucket_elems, bool distributed)
    : params_(params), divisor_(divisor), distributed_(distributed), owned_(params->size(), true),
      bucket_of_(params->size(), -1) {
  std::vector<int64_t> numel;
  std::vector<bool> expert;
  for (const Param& p : *params) {
    numel.push_back(p.var.value().numel());
    expert.push_back(p.expert);
  }
  auto size_of = [](const Communicator* c) { return c == nullptr ? 1 : c->size(); };
  for (GradBucket& plan : grad_bucket_plan(numel, expert, size_of(dp), size_of(edp), bucket_elems, distributed)) {
    Bucket b;
    b.comm = plan.expert ? edp : dp;
    const int me = b.comm == nullptr ? 0 : b.comm->rank();
    for (size_t k = 0; k < plan.params.size(); ++k) {
      bucket_of_[plan.params[k]] = static_cast<int>(buckets_.size());
      if (distributed_) owned_[plan.params[k]] = plan.owner[k] == me;
    }
    b.params = std::move(plan.params);
    b.offset = std::move(plan.offset);
    b.elems = plan.elems;
    b.chunk = plan.chunk;
    b.pending = static_cast<int>(b.params.size());
    buckets_.push_back(std::move(b));
  }
}

std::function<void(size_t)> GradReducer::hook() {
  return [this](size_t i) { ready(i); };
}

void GradReducer::ready(size_t param) {
  CMOE_CHECK(param < bucket_of_.size(), "GradReducer: parameter ", param, " of ", bucket_of_.size());
  Bucket& b = buckets_[bucket_of_[param]];
  if (--b.pending == 0) launch_ready_in_order();
}

void GradReducer::launch_ready_in_order() {
  while (next_launch_ < buckets_.size() && buckets_[next_launch_].pending <= 0) {
    absl::Status s = launch(buckets_[next_launch_++]);
    if (!s.ok() && error_.ok()) error_ = s;
    ++overlapped_;
  }
}

namespace {

// The device the parameters live on (all of one model on one device).
Device params_device(const std::vector<Param>& params) {
  return params.empty() ? kCPU : params[0].var.value().device();
}

// dst (a flat f32 slice) = src's elements, or zeros when src is undefined; any device.
void put(Tensor dst, const Tensor& src) {
  if (src.defined()) dst.copy_from(src);
  else dst.zero_();
}

}  // namespace

absl::Status GradReducer::launch(Bucket& b) {
  b.launched = true;
  const Device dev = params_device(*params_);
  if (!dev.is_cpu()) {
    // Device gradients: packed with device copies on the compute stream; the collective's stream
    // waits for them (parallel/backend/nccl.h), so packing and reduction stay ordered.
    b.buf = Tensor::zeros({b.elems}, DType::kF32, dev);
    int64_t at = 0;
    for (size_t k = 0; k < b.params.size(); ++k) {
      const Param& p = (*params_)[b.params[k]];
      const int64_t n = p.var.value().numel();
      if (distributed_) at = b.offset[k];
      if (p.var.grad().defined()) put(b.buf.slice0(at, at + n), p.var.grad().view({n}));
      at += n;
    }
    if (b.comm == nullptr || b.comm->size() == 1) {
      if (distributed_) b.out = b.buf;
      return absl::OkStatus();
    }
    if (distributed_) {
      b.out = Tensor::empty({b.chunk}, DType::kF32, dev);
      CMOE_ASSIGN_OR_RETURN(b.work, b.comm->reduce_scatter_async(b.out, b.buf, ReduceOp::kSum));
    } else {
      CMOE_ASSIGN_OR_RETURN(b.work, b.comm->all_reduce_async(b.buf, ReduceOp::kSum));
    }
    return absl::OkStatus();
  }
  if (distributed_) {
    b.buf = Tensor::zeros({b.elems}, DType::kF32);  // padding included
    float* base = b.buf.data<float>();
    for (size_t k = 0; k < b.params.size(); ++k) {
      const Tensor& g = (*params_)[b.params[k]].var.grad();
      if (g.defined()) std::memcpy(base + b.offset[k], g.data<float>(), g.numel() * sizeof(float));
    }
    if (b.comm == nullptr || b.comm->size() == 1) {
      b.out = b.buf;
      return absl::OkStatus();
    }
    b.out = Tensor::empty({b.chunk}, DType::kF32);  // this rank's chunk of the sum
    b.comm->count(CommKind::kReduceScatter, static_cast<int64_t>(b.buf.nbytes()));
    CMOE_ASSIGN_OR_RETURN(b.work, b.comm->reduce_scatter_async(b.out, b.buf, ReduceOp::kSum));
    return absl::OkStatus();
  }
  b.buf = Tensor::empty({b.elems}, DType::kF32);
  float* dst = b.buf.data<float>();
  for (size_t i : b.params) {
    const Tensor& g = (*params_)[i].var.grad();
    const int64_t n = (*params_)[i].var.value().numel();
    if (g.defined()) std::memcpy(dst, g.data<float>(), n * sizeof(float));
    else std::memset(dst, 0, n * sizeof(float));
    dst += n;
  }
  if (b.comm == nullptr || b.comm->size() == 1) return absl::OkStatus();
  b.comm->count(CommKind::kAllReduce, static_cast<int64_t>(b.buf.nbytes()));
  CMOE_ASSIGN_OR_RETURN(b.work, b.comm->all_reduce_async(b.buf, ReduceOp::kSum));
  return absl::OkStatus();
}

absl::Status GradReducer::finish() {
  overlapped_last_ = overlapped_;
  while (next_launch_ < buckets_.size()) CMOE_RETURN_IF_ERROR(launch(buckets_[next_launch_++]));
  CMOE_RETURN_IF_ERROR(error_);
  const float inv = 1.0f / static_cast<float>(divisor_);
  const Device dev = params_device(*params_);
  // grad = inv * flat[at, at + numel)
  auto set_mean_grad = [inv, dev](Param& p, const Tensor& flat, int64_t at) {
    Tensor g = Tensor::empty(p.var.value().shape(), DType::kF32, dev);
    const int64_t n = g.numel();
    if (dev.is_cpu()) {
      const float* sum = flat.data<float>() + at;
      float* out = g.data<float>();
      for (int64_t e = 0; e < n; ++e) out[e] = sum[e] * inv;
    } else {
      Tensor gv = g.view({n});
      ag::kernels(dev).scale_forward(gv, flat.slice0(at, at + n), inv);
    }
    p.var.set_grad(g);
  };
  for (Bucket& b : buckets_) {
    {
      prof::Span span(distributed_ ? "grad_reduce_scatter wait" : "grad_all_reduce wait", prof::Cat::kComm);
      span.add_work(0, static_cast<double>(b.elems) * sizeof(float));
      CMOE_RETURN_IF_ERROR(b.work.wait());
    }
    if (distributed_) {
      // out holds this rank's chunk: offsets shift by the chunks before it.
      const int me = b.comm == nullptr || b.comm->size() == 1 ? 0 : b.comm->rank();
      const int64_t first = static_cast<int64_t>(me) * b.chunk;
      for (size_t k = 0; k < b.params.size(); ++k) {
        Param& p = (*params_)[b.params[k]];
        if (owned_[b.params[k]]) set_mean_grad(p, b.out, b.offset[k] - first);
        else p.var.zero_grad();  // the owner updates it; gather_params brings the value back
      }
    } else {
      int64_t at = 0;
      for (size_t i : b.params) {
        set_mean_grad((*params_)[i], b.buf, at);
        at += (*params_)[i].var.value().numel();
      }
    }
    b.buf = Tensor();
    b.out = Tensor();
    b.launched = false;
    b.pending = static_cast<int>(b.params.size());
  }
  next_launch_ = 0;
  overlapped_ = 0;
  return absl::OkStatus();
}

absl::Status GradReducer::gather_params() {
  if (!distributed_) return absl::OkStatus();
  // Post every bucket's all-gather, then copy values out as they complete.
  std::vector<CommWork> works(buckets_.size());
  std::vector<Tensor> bufs(buckets_.size());
  for (size_t bi = 0; bi < buckets_.size(); ++bi) {
    Bucket& b = buckets_[bi];
    if (b.comm == nullptr || b.comm->size() == 1) continue;
    const int64_t first = static_cast<int64_t>(b.comm->rank()) * b.chunk;
    const Device dev = params_device(*params_);
    Tensor mine = Tensor::zeros({b.chunk}, DType::kF32, dev);  // this rank's chunk, padding included
    for (size_t k = 0; k < b.params.size(); ++k) {
      if (!owned_[b.params[k]]) continue;
      const Tensor& v = (*params_)[b.params[k]].var.value();
      if (dev.is_cpu()) {
        std::memcpy(mine.data<float>() + (b.offset[k] - first), v.data<float>(), v.numel() * sizeof(float));
      } else {
        put(mine.slice0(b.offset[k] - first, b.offset[k] - first + v.numel()), v.view({v.numel()}));
      }
    }
    bufs[bi] = Tensor::empty({b.elems}, DType::kF32, dev);
    b.comm->count(CommKind::kAllGather, static_cast<int64_t>(mine.nbytes()));
    CMOE_ASSIGN_OR_RETURN(works[bi], b.comm->all_gather_async(bufs[bi], mine));
  }
  for (size_t bi = 0; bi < buckets_.size(); ++bi) {
    if (!bufs[bi].defined()) continue;
    {
      prof::Span span("zero1_all_gather wait", prof::Cat::kComm);
      span.add_work(0, static_cast<double>(buckets_[bi].chunk) * sizeof(float));
      CMOE_RETURN_IF_ERROR(works[bi].wait());
    }
    const Bucket& b = buckets_[bi];
    for (size_t k = 0; k < b.params.size(); ++k) {
      if (owned_[b.params[k]]) continue;
      Tensor& v = (*params_)[b.params[k]].var.mutable_value();
      if (v.device().is_cpu()) {
        std::memcpy(v.data<float>(), bufs[bi].data<float>() + b.offset[k], v.numel() * sizeof(float));
      } else {
        v.view({v.numel()}).copy_from(bufs[bi].slice0(b.offset[k], b.offset[k] + v.numel()));
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace cmoe::parallel
