// distributed.cpp — expert-parallel dispatch/combine and the data-parallel gradient reducer
// (see distributed.h).
#include "moe/distributed.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "parallel/process_groups.h"

namespace cmoe {

namespace {

Shape with_rows(Shape s, int64_t rows) {
  s[0] = rows;
  return s;
}

int64_t total(const std::vector<int64_t>& v) {
  int64_t s = 0;
  for (int64_t x : v) s += x;
  return s;
}

}  // namespace

ag::Var all_to_all_v_op(const ag::Var& in, const std::vector<int64_t>& send_rows,
                        const std::vector<int64_t>& recv_rows, parallel::Communicator& comm) {
  const Tensor& x = in.value();
  Tensor out = Tensor::empty(with_rows(x.shape(), total(recv_rows)), x.dtype());
  parallel::comm_or_abort(comm.all_to_all_v(out, recv_rows, x, send_rows), "expert-parallel all_to_all_v");
  auto xi = in.impl();
  parallel::Communicator* c = &comm;
  return ag::make_result(out, "all_to_all_v", {in}, [xi, send_rows, recv_rows, c](const Tensor& g) {
    Tensor dx = Tensor::empty(xi->value.shape(), DType::kF32);
    parallel::comm_or_abort(c->all_to_all_v(dx, send_rows, g, recv_rows),
                            "expert-parallel all_to_all_v (backward)");
    ag::accumulate_grad(*xi, dx);
  });
}

ag::Var ep_dispatch_experts(const ag::Var& u, const Tensor& indices, const ag::Var& weights,
                            const ExpertWeights& local, int64_t num_experts, parallel::Communicator& ep,
                            DType compute_dtype) {
  const int n_ep = ep.size();
  const int64_t N = indices.dim(0), K = indices.dim(1);
  CMOE_CHECK(u.value().dim(0) == N && weights.value().dim(0) == N && weights.value().dim(1) == K,
             "ep_dispatch: u ", u.value().str(), ", indices ", indices.str(), ", weights ", weights.value().str());
  const parallel::ExpertRange mine = parallel::owned_experts(num_experts, n_ep, ep.rank());
  CMOE_CHECK(local.w1.value().dim(0) == mine.size(), "ep_dispatch: local experts ", local.w1.value().str(),
             " for range [", mine.begin, ", ", mine.end, ")");
  const int32_t* idx = indices.data<int32_t>();

  // Sent rows, grouped by destination rank, tokens in order within a destination.
  std::vector<std::vector<int32_t>> to(n_ep);
  {
    std::vector<int> last(n_ep, -1);
    for (int64_t n = 0; n < N; ++n) {
      for (int64_t j = 0; j < K; ++j) {
        if (idx[n * K + j] < 0) continue;
        const int r = parallel::expert_owner(num_experts, n_ep, idx[n * K + j]);
        if (last[r] != n) to[r].push_back(static_cast<int32_t>(n)), last[r] = static_cast<int>(n);
      }
    }
  }
  std::vector<int64_t> send(n_ep), recv(n_ep);
  std::vector<int32_t> sent_token;
  for (int r = 0; r < n_ep; ++r) {
    send[r] = static_cast<int64_t>(to[r].size());
    sent_token.insert(sent_token.end(), to[r].begin(), to[r].end());
  }
  const int64_t S = static_cast<int64_t>(sent_token.size());
  // Per sent row: the k local expert ids on its destination (-1 elsewhere) and a 0/1 mask.
  std::vector<int32_t> ids(S * K, -1);
  std::vector<float> mask(S * K, 0.0f);
  {
    int64_t row = 0;
    for (int r = 0; r < n_ep; ++r) {
      const parallel::ExpertRange rr = parallel::owned_experts(num_experts, n_ep, r);
      for (int32_t n : to[r]) {
        for (int64_t j = 0; j < K; ++j) {
          const int32_t e = idx[n * K + j];
          if (e >= rr.begin && e < rr.end) ids[row * K + j] = static_cast<int32_t>(e - rr.begin), mask[row * K + j] = 1;
        }
        ++row;
      }
    }
  }
  {
    Tensor sc = Tensor::empty({n_ep}, DType::kI64), rc = Tensor::empty({n_ep}, DType::kI64);
    std::memcpy(sc.data<int64_t>(), send.data(), n_ep * sizeof(int64_t));
    parallel::comm_or_abort(ep.all_to_all(rc, sc), "expert-parallel count exchange");
    std::memcpy(recv.data(), rc.data<int64_t>(), n_ep * sizeof(int64_t));
  }
  Tensor sent_idx = Tensor::from_ints({S}, sent_token);
  Tensor ids_send = Tensor::from_ints({S, K}, ids);
  Tensor ids_recv = Tensor::empty({total(recv), K}, DType::kI32);
  parallel::comm_or_abort(ep.all_to_all_v(ids_recv, recv, ids_send, send), "expert-parallel expert ids");

  ag::Var x_recv = all_to_all_v_op(ag::gather_rows(u, sent_idx), send, recv, ep);             // (R, d)
  ag::Var w_send = ag::mul(ag::gather_rows(weights, sent_idx), ag::Var(Tensor::from_floats({S, K}, mask)));
  ag::Var w_recv = all_to_all_v_op(w_send, send, recv, ep);                                   // (R, k)
  DispatchPlan plan = dispatch_plan(ids_recv, mine.size());
  ag::Var y = dispatch_experts(x_recv, plan, w_recv, local, compute_dtype);                  // (R, d)
  ag::Var back = all_to_all_v_op(y, recv, send, ep);                                          // (S, d)
  return ag::scatter_add_rows(back, sent_idx, ag::Var(Tensor::full({S}, 1.0f)), N);          // (N, d)
}

GradReducer::GradReducer(std::vector<Param>* params, parallel::Communicator* dp, parallel::Communicator* edp,
                         int divisor, int64_t bucket_elems, bool distributed)
    : params_(params), divisor_(divisor), distributed_(distributed), owned_(params->size(), true),
      bucket_of_(params->size(), -1) {
  // Reverse creation order approximates the order backward completes the gradients (the head
  // first, the embedding last). A bucket holds parameters of one group only.
  int open[2] = {-1, -1};  // the bucket being filled, per group (replicated, expert)
  for (size_t i = params->size(); i-- > 0;) {
    const Param& p = (*params)[i];
    const int g = p.expert ? 1 : 0;
    const int64_t n = p.var.value().numel();
    if (open[g] < 0 || buckets_[open[g]].elems + n > bucket_elems) {
      open[g] = static_cast<int>(buckets_.size());
      buckets_.emplace_back();
      buckets_.back().comm = g == 1 ? edp : dp;
    }
    buckets_[open[g]].params.push_back(i);
    buckets_[open[g]].elems += n;
    bucket_of_[i] = open[g];
  }
  for (Bucket& b : buckets_) {
    b.pending = static_cast<int>(b.params.size());
    const int size = b.comm == nullptr ? 1 : b.comm->size(), me = b.comm == nullptr ? 0 : b.comm->rank();
    if (!distributed_) continue;
    // Owners balanced by size (parallel::balance_by_size); then the bucket laid out owner by
    // owner, each owner's chunk padded to the largest.
    std::vector<int64_t> sizes;
    for (size_t i : b.params) sizes.push_back((*params)[i].var.value().numel());
    const std::vector<int> owner = parallel::balance_by_size(sizes, size);
    std::vector<int64_t> load(static_cast<size_t>(size), 0);
    for (size_t k = 0; k < b.params.size(); ++k) {
      load[owner[k]] += sizes[k];
      owned_[b.params[k]] = owner[k] == me;
    }
    b.chunk = *std::max_element(load.begin(), load.end());
    std::vector<size_t> laid;
    for (int r = 0; r < size; ++r) {
      int64_t at = static_cast<int64_t>(r) * b.chunk;
      for (size_t k = 0; k < b.params.size(); ++k) {
        if (owner[k] != r) continue;
        laid.push_back(b.params[k]);
        b.offset.push_back(at);
        at += sizes[k];
      }
    }
    b.params = laid;
    b.elems = b.chunk * size;
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

absl::Status GradReducer::launch(Bucket& b) {
  b.launched = true;
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
    CMOE_ASSIGN_OR_RETURN(b.work, b.comm->reduce_scatter_async(b.out, b.buf, parallel::ReduceOp::kSum));
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
  CMOE_ASSIGN_OR_RETURN(b.work, b.comm->all_reduce_async(b.buf, parallel::ReduceOp::kSum));
  return absl::OkStatus();
}

absl::Status GradReducer::finish() {
  overlapped_last_ = overlapped_;
  while (next_launch_ < buckets_.size()) CMOE_RETURN_IF_ERROR(launch(buckets_[next_launch_++]));
  CMOE_RETURN_IF_ERROR(error_);
  const float inv = 1.0f / static_cast<float>(divisor_);
  auto set_mean_grad = [inv](Param& p, const float* sum) {
    Tensor g = Tensor::empty(p.var.value().shape(), DType::kF32);
    float* out = g.data<float>();
    for (int64_t e = 0, n = g.numel(); e < n; ++e) out[e] = sum[e] * inv;
    p.var.set_grad(g);
  };
  for (Bucket& b : buckets_) {
    CMOE_RETURN_IF_ERROR(b.work.wait());
    if (distributed_) {
      // out holds this rank's chunk: offsets shift by the chunks before it.
      const int me = b.comm == nullptr || b.comm->size() == 1 ? 0 : b.comm->rank();
      const int64_t first = static_cast<int64_t>(me) * b.chunk;
      for (size_t k = 0; k < b.params.size(); ++k) {
        Param& p = (*params_)[b.params[k]];
        if (owned_[b.params[k]]) set_mean_grad(p, b.out.data<float>() + (b.offset[k] - first));
        else p.var.zero_grad();  // the owner updates it; gather_params brings the value back
      }
    } else {
      const float* src = b.buf.data<float>();
      for (size_t i : b.params) {
        set_mean_grad((*params_)[i], src);
        src += (*params_)[i].var.value().numel();
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
  std::vector<parallel::CommWork> works(buckets_.size());
  std::vector<Tensor> bufs(buckets_.size());
  for (size_t bi = 0; bi < buckets_.size(); ++bi) {
    Bucket& b = buckets_[bi];
    if (b.comm == nullptr || b.comm->size() == 1) continue;
    const int64_t first = static_cast<int64_t>(b.comm->rank()) * b.chunk;
    Tensor mine = Tensor::zeros({b.chunk}, DType::kF32);  // this rank's chunk, padding included
    for (size_t k = 0; k < b.params.size(); ++k) {
      if (!owned_[b.params[k]]) continue;
      const Tensor& v = (*params_)[b.params[k]].var.value();
      std::memcpy(mine.data<float>() + (b.offset[k] - first), v.data<float>(), v.numel() * sizeof(float));
    }
    bufs[bi] = Tensor::empty({b.elems}, DType::kF32);
    CMOE_ASSIGN_OR_RETURN(works[bi], b.comm->all_gather_async(bufs[bi], mine));
  }
  for (size_t bi = 0; bi < buckets_.size(); ++bi) {
    if (!bufs[bi].defined()) continue;
    CMOE_RETURN_IF_ERROR(works[bi].wait());
    const Bucket& b = buckets_[bi];
    const float* base = bufs[bi].data<float>();
    for (size_t k = 0; k < b.params.size(); ++k) {
      if (owned_[b.params[k]]) continue;
      Tensor& v = (*params_)[b.params[k]].var.mutable_value();
      std::memcpy(v.data<float>(), base + b.offset[k], v.numel() * sizeof(float));
    }
  }
  return absl::OkStatus();
}

}  // namespace cmoe
