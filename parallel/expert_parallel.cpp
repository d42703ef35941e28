// expert_parallel.cpp — expert-parallel dispatch/combine (see expert_parallel.h).
#include "parallel/expert_parallel.h"

#include <cstring>

#include "parallel/process_groups.h"
#include "parallel/staging.h"

namespace cmoe::parallel {

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
                        const std::vector<int64_t>& recv_rows, Communicator& comm) {
  const Tensor& x = in.value();
  Tensor out = Tensor::empty(with_rows(x.shape(), total(recv_rows)), x.dtype(), x.device());
  comm_or_abort(comm.all_to_all_v(out, recv_rows, x, send_rows), "expert-parallel all_to_all_v");
  auto xi = in.impl();
  Communicator* c = &comm;
  return ag::make_result(out, "all_to_all_v", {in}, [xi, send_rows, recv_rows, c](const Tensor& g) {
    Tensor dx = Tensor::empty(xi->value.shape(), DType::kF32, g.device());
    comm_or_abort(c->all_to_all_v(dx, send_rows, g, recv_rows),
                            "expert-parallel all_to_all_v (backward)");
    ag::accumulate_grad(*xi, dx);
  });
}

ag::Var expert_parallel_apply(const ag::Var& u, const Tensor& indices, const ag::Var& weights,
                              int64_t num_experts, Communicator& ep, const LocalExpertFn& local) {
  const int n_ep = ep.size();
  const int64_t N = indices.dim(0), K = indices.dim(1);
  CMOE_CHECK(u.value().dim(0) == N && weights.value().dim(0) == N && weights.value().dim(1) == K,
             "expert_parallel_apply: u ", u.value().str(), ", indices ", indices.str(), ", weights ", weights.value().str());
  // The bookkeeping below is host work on the (N, k) ids: a device batch's ids are copied back
  // once (the counts sent with all_to_all must be host values anyway).
  const Device dev = u.value().device();
  const Tensor host_idx = indices.device().is_cpu() ? indices : indices.to(kCPU);
  const int32_t* idx = host_idx.data<int32_t>();
  auto on = [](Tensor t, Device d) { return d.is_cpu() ? t : t.to(d); };

  // Sent rows, grouped by destination rank, tokens in order within a destination.
  std::vector<std::vector<int32_t>> to(n_ep);
  {
    std::vector<int> last(n_ep, -1);
    for (int64_t n = 0; n < N; ++n) {
      for (int64_t j = 0; j < K; ++j) {
        if (idx[n * K + j] < 0) continue;
        const int r = expert_owner(num_experts, n_ep, idx[n * K + j]);
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
      const ExpertRange rr = owned_experts(num_experts, n_ep, r);
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
    comm_or_abort(all_to_all_host(ep, rc, sc), "expert-parallel count exchange");
    std::memcpy(recv.data(), rc.data<int64_t>(), n_ep * sizeof(int64_t));
  }
  Tensor sent_idx = on(Tensor::from_ints({S}, sent_token), dev);
  Tensor ids_send = on(Tensor::from_ints({S, K}, ids), dev);
  Tensor ids_recv = Tensor::empty({total(recv), K}, DType::kI32, dev);
  comm_or_abort(ep.all_to_all_v(ids_recv, recv, ids_send, send), "expert-parallel expert ids");

  ag::Var x_recv = all_to_all_v_op(ag::gather_rows(u, sent_idx), send, recv, ep);             // (R, d)
  ag::Var w_send = ag::mul(ag::gather_rows(weights, sent_idx), ag::Var(on(Tensor::from_floats({S, K}, mask), dev)));
  ag::Var w_recv = all_to_all_v_op(w_send, send, recv, ep);                                   // (R, k)
  ag::Var y = local(x_recv, ids_recv, w_recv);                                               // (R, d)
  ag::Var back = all_to_all_v_op(y, recv, send, ep);                                          // (S, d)
  return ag::scatter_add_rows(back, sent_idx, ag::Var(Tensor::full({S}, 1.0f, dev)), N);     // (N, d)
}

}  // namespace cmoe::parallel
