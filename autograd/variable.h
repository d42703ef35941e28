// variable.h — reverse-mode autograd: Var, Node, the tape walk and gradient modes.
//
// A Var is a shared handle (copies alias) to a value tensor, its gradient and, for results of
// differentiable ops, the Node that made it. A Node holds its inputs and a backward closure
// that owns exactly the tensors backward reads. The graph is the tape: backward() walks it in
// reverse topological order, and releases each Node right after running it, so saved
// activations are freed as soon as backward no longer needs them and nothing from a step
// outlives it. Leaves (parameters, inputs with requires_grad) keep their accumulated grad.
//
// What later layers plug in without rework:
//   * communication ops (all-to-all, all-reduce) are ordinary Nodes built with make_result();
//   * pipeline stages call backward(outputs, output_grads) on a stage's outputs and read the
//     grads of their detached inputs (requires_grad leaves);
//   * activation recomputation wraps a layer in recompute(), which runs it without a tape and
//     re-runs it with one during backward.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace cmoe::ag {

struct VarImpl;

// A Node's backward receives the gradient of its output and adds gradients to its inputs
// with accumulate_grad(); it may leave an input untouched when that input gets no gradient.
struct Node {
  const char* op_name = "";
  std::vector<std::shared_ptr<VarImpl>> inputs;
  std::function<void(const Tensor& grad_out)> backward;
  // Work of the backward, for the profiler (core/profiler.h); set while a capture runs.
  double flops = 0, bytes = 0;
};

struct VarImpl {
  Tensor value;
  Tensor grad;  // f32, same shape as value; undefined until some gradient arrives
  bool requires_grad = false;
  std::shared_ptr<Node> node;  // null for leaves
  std::string name;            // for messages and parameter tables
};

class Var {
 public:
  Var() = default;
  explicit Var(Tensor value, bool requires_grad = false, std::string name = {});

  bool defined() const { return impl_ != nullptr; }
  const Tensor& value() const { return impl_->value; }
  Tensor& mutable_value() { return impl_->value; }
  const Tensor& grad() const { return impl_->grad; }
  void zero_grad() { impl_->grad = Tensor(); }
  void set_grad(Tensor g) { impl_->grad = std::move(g); }
  bool requires_grad() const { return impl_ && impl_->requires_grad; }
  const std::string& name() const { return impl_->name; }
  const Shape& shape() const { return impl_->value.shape(); }
  const std::shared_ptr<VarImpl>& impl() const { return impl_; }
  // A new leaf sharing this value (aliasing), cut from the graph.
  Var detach(bool requires_grad = false) const;

 private:
  std::shared_ptr<VarImpl> impl_;
};

// Whether ops record the tape on this thread (RAII guard to turn it off).
bool grad_enabled();
class NoGradGuard {
 public:
  NoGradGuard();
  ~NoGradGuard();
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool prev_;
};

// Adds g into input's grad (allocating on first arrival). Out of place when a grad already
// exists, so a tensor handed to two inputs never aliases a grad that later accumulates.
void accumulate_grad(VarImpl& input, const Tensor& g);

// True when any input requires grad and the tape is on: the op must record a Node.
bool needs_grad(std::initializer_list<const Var*> inputs);

// Wraps an op's output: when needs_grad, attaches a Node with these inputs and backward.
// While a profile capture runs it also adds the bytes the op read and wrote to the op's span
// and estimates its backward's (twice as many).
Var make_result(Tensor value, const char* op_name, std::vector<Var> inputs,
                std::function<void(const Tensor& grad_out)> backward);

// For matmul-like ops, while profiling: the forward's FLOPs go to the op's span and twice as
// many to its backward (dx and dw each cost a forward); or, where backward_flops is given
// (>= 0), that many and no bytes: the backward does only that work (0: it hands results on).
void op_flops(const Var& result, const char* op_name, double forward_flops,
              double backward_flops = -1);

// Runs backward from scalar `root` (seed gradient 1), or from several roots with given
// gradients (pipeline stages). Intermediate grads and Nodes are freed as the walk goes.
void backward(const Var& root);
void backward(const std::vector<Var>& roots, const std::vector<Tensor>& root_grads);

// Activation recomputation: fn(inputs) runs without a tape now and again, with one, when
// backward reaches it. Params used inside fn must be captured leaves; they receive grads.
Var recompute(const std::function<Var(const std::vector<Var>&)>& fn, const std::vector<Var>& inputs);

}  // namespace cmoe::ag
