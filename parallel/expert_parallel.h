// expert_parallel.h — expert-parallel dispatch and combine as autograd operations.
//
// ep ranks each own experts owned_experts(E, ep, r) of an expert set. For a routed layer:
//   dispatch: a token whose k choices land on ranks {j} is sent once to each such j, as its
//             row u[n] plus k weights (w[n, i] where expert idx[n, i] lives on j, else 0) and
//             k local expert ids (-1 where not on j);
//   local:    the caller's function computes, for every received row, sum_i w_i FFN_i(row)
//             over the local expert ids (the model passes its single-rank dispatch);
//   combine:  the rows go back to their senders, which add them into their tokens:
//             out[n] = sum_j local_j(u[n]) = sum_i w[n, i] FFN_{idx[n, i]}(u[n]).
// Counts per destination are exchanged with all_to_all first; rows, weights and ids travel
// with all_to_all_v. The transfers are autograd nodes (all_to_all_v_op) whose backward is the
// reverse all_to_all_v, so backward mirrors forward with no extra bookkeeping. A Cartesian
// layer calls this twice, once for sub-expert set A and once for B.
#pragma once

#include <functional>
#include <vector>

#include "autograd/ops.h"
#include "parallel/communicator.h"

namespace cmoe::parallel {

// out = in sent through comm.all_to_all_v (rows send_rows[j] to rank j, recv_rows[j] from j);
// backward sends the gradient back the same way with the counts swapped.
ag::Var all_to_all_v_op(const ag::Var& in, const std::vector<int64_t>& send_rows,
                        const std::vector<int64_t>& recv_rows, Communicator& comm);

// The per-rank expert computation: x (R, d) received rows, local_ids (R, k) i32 ids into this
// rank's expert slice (-1 = that choice is on another rank), weights (R, k) (0 where -1)
// -> (R, d) = sum_i weights[r, i] FFN_{local_ids[r, i]}(x[r]).
using LocalExpertFn =
    std::function<ag::Var(const ag::Var& x, const Tensor& local_ids, const ag::Var& weights)>;

// u: (N, d); indices: (N, k) global expert ids in [0, num_experts) (-1 = none); weights: (N, k).
// Returns (N, d) = sum_i w_i FFN_{idx_i}(u), as the single-rank dispatch does. Collective
// over ep: every rank of the group calls it for the same layer.
ag::Var expert_parallel_apply(const ag::Var& u, const Tensor& indices, const ag::Var& weights,
                              int64_t num_experts, Communicator& ep, const LocalExpertFn& local);

}  // namespace cmoe::parallel
