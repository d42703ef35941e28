// variable.cpp — the tape walk, gradient accumulation and recomputation.
#include "autograd/variable.h"

#include <cstring>
#include <unordered_set>

#include "autograd/op_table.h"
#include "core/profiler.h"

namespace cmoe::ag {

Var::Var(Tensor value, bool requires_grad, std::string name) : impl_(std::make_shared<VarImpl>()) {
  impl_->value = std::move(value);
  impl_->requires_grad = requires_grad;
  impl_->name = std::move(name);
}

Var Var::detach(bool requires_grad) const { return Var(impl_->value, requires_grad, impl_->name); }

namespace {
thread_local bool t_grad_enabled = true;
}

bool grad_enabled() { return t_grad_enabled; }
NoGradGuard::NoGradGuard() : prev_(t_grad_enabled) { t_grad_enabled = false; }
NoGradGuard::~NoGradGuard() { t_grad_enabled = prev_; }

void accumulate_grad(VarImpl& input, const Tensor& g) {
  if (!input.requires_grad) return;
  CMOE_CHECK(g.shape() == input.value.shape(), "gradient ", g.str(), " for ",
             input.name.empty() ? "tensor" : input.name, " ", input.value.str());
  if (!input.grad.defined()) {
    input.grad = g;
  } else {
    // Sums are f32: a bf16 gradient (from an op that rounds for the bf16 matmul it feeds, see
    // ag::swiglu) is widened first.
    auto f32 = [](const Tensor& t) { return t.dtype() == DType::kF32 ? t : t.to_dtype(DType::kF32); };
    Tensor sum = Tensor::empty(g.shape(), DType::kF32, g.device());
    kernels(g.device()).add_forward(sum, f32(input.grad), f32(g));
    input.grad = sum;
  }
}

bool needs_grad(std::initializer_list<const Var*> inputs) {
  if (!t_grad_enabled) return false;
  for (const Var* v : inputs)
    if (v->defined() && v->requires_grad()) return true;
  return false;
}

Var make_result(Tensor value, const char* op_name, std::vector<Var> inputs,
                std::function<void(const Tensor& grad_out)> backward) {
  bool any = false;
  if (t_grad_enabled)
    for (const Var& v : inputs) any = any || v.requires_grad();
  double bytes = 0;
  if (prof::capturing() && std::strcmp(op_name, "reshape") != 0) {  // a view moves nothing
    bytes = static_cast<double>(value.nbytes());
    for (const Var& v : inputs) bytes += static_cast<double>(v.value().nbytes());
    prof::add_work(op_name, 0, bytes);
  }
  Var out(std::move(value), any);
  if (!any) return out;
  auto node = std::make_shared<Node>();
  // Backward moves about twice the forward's bytes; add's hands its gradient on unchanged.
  node->bytes = std::strcmp(op_name, "add") == 0 ? 0 : 2 * bytes;
  node->op_name = op_name;
  for (const Var& v : inputs) node->inputs.push_back(v.impl());
  node->backward = std::move(backward);
  out.impl()->node = std::move(node);
  return out;
}

void backward(const Var& root) {
  CMOE_CHECK(root.value().numel() == 1, "backward(root) needs a scalar, got ", root.value().str());
  backward({root}, {Tensor::full(root.shape(), 1.0f, root.value().device())});
}

void backward(const std::vector<Var>& roots, const std::vector<Tensor>& root_grads) {
  CMOE_CHECK(roots.size() == root_grads.size(), roots.size(), " roots, ", root_grads.size(), " grads");
  // Iterative DFS post-order over VarImpls that have a Node.
  // `order` holds owning references: releasing a consumer's Node may drop the last other
  // reference to its inputs, and each entry is reset right after its backward runs so the
  // activations it owns are freed during the walk, not after it.
  std::vector<std::shared_ptr<VarImpl>> order;
  std::unordered_set<VarImpl*> seen;
  std::vector<std::pair<std::shared_ptr<VarImpl>, size_t>> stack;
  for (const Var& r : roots) {
    if (!r.impl()->node || seen.count(r.impl().get())) continue;
    seen.insert(r.impl().get());
    stack.push_back({r.impl(), 0});
    while (!stack.empty()) {
      auto& top = stack.back();
      if (top.second < top.first->node->inputs.size()) {
        std::shared_ptr<VarImpl> in = top.first->node->inputs[top.second++];
        if (in->node && !seen.count(in.get())) {
          seen.insert(in.get());
          stack.push_back({std::move(in), 0});
        }
      } else {
        order.push_back(std::move(top.first));
        stack.pop_back();
      }
    }
  }
  for (size_t i = 0; i < roots.size(); ++i) accumulate_grad(*roots[i].impl(), root_grads[i]);
  // Reverse post-order is a topological order from the roots down.
  for (auto it = order.rbegin(); it != order.rend(); ++it) {
    std::shared_ptr<VarImpl> v = std::move(*it);
    std::shared_ptr<Node> node = std::move(v->node);  // releases the graph edge now
    Tensor g = std::move(v->grad);                    // intermediate grads are not kept
    if (!g.defined()) continue;
    prof::Span span(node->op_name, prof::Cat::kOpBackward);
    span.add_work(node->flops, node->bytes);
    node->backward(g);
  }
}

void op_flops(const Var& result, const char* op_name, double forward_flops, double backward_flops) {
  if (!prof::capturing()) return;
  prof::add_work(op_name, forward_flops, 0);
  if (result.defined() && result.impl()->node) {
    Node& node = *result.impl()->node;
    node.flops = backward_flops >= 0 ? backward_flops : 2 * forward_flops;
    if (backward_flops >= 0) node.bytes = 0;
  }
}

Var recompute(const std::function<Var(const std::vector<Var>&)>& fn, const std::vector<Var>& inputs) {
  Var out;
  {
    NoGradGuard no_grad;
    out = fn(inputs);
  }
  return make_result(out.value(), "recompute", inputs, [fn, inputs](const Tensor& gout) {
    std::vector<Var> fresh;
    fresh.reserve(inputs.size());
    for (const Var& v : inputs) fresh.push_back(v.detach(v.requires_grad()));
    Var again = fn(fresh);
    backward({again}, {gout});
    for (size_t i = 0; i < inputs.size(); ++i) {
      if (fresh[i].grad().defined()) accumulate_grad(*inputs[i].impl(), fresh[i].grad());
    }
  });
}

}  // namespace cmoe::ag
