// optimizer.h — AdamW (decoupled weight decay), global-norm clipping and the LR schedule.
//
//   p <- p * (1 - lr * wd)                        (only params with decay)
//   m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2
//   p <- p - lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
// The same order of operations as torch.optim.AdamW, so both give the same trajectory.
// Params whose grad is undefined (no gradient arrived) are skipped, as PyTorch skips None.
// On a CUDA device the same update runs as one multi-tensor kernel (core/cuda/multi_tensor.h).
#pragma once

#include <cstdint>
#include <vector>

#include "moe/train/config.h"
#include "moe/model.h"

namespace cmoe {

struct AdamWOptions {
  float beta1 = 0.9f, beta2 = 0.95f, eps = 1e-8f, weight_decay = 0.1f;
};

class AdamW {
 public:
  AdamW(std::vector<Param>* params, const AdamWOptions& opt);
  // One update with learning rate lr; grads are multiplied by grad_scale first (clipping).
  void step(float lr, float grad_scale = 1.0f);
  int64_t steps() const { return t_; }
  void set_steps(int64_t t) { t_ = t; }
  // First and second moments, parallel to the params (for checkpoints).
  std::vector<Tensor>& exp_avg() { return m_; }
  std::vector<Tensor>& exp_avg_sq() { return v_; }
  const std::vector<Tensor>& exp_avg() const { return m_; }
  const std::vector<Tensor>& exp_avg_sq() const { return v_; }
  // ZeRO-1: keep state only for the parameters this rank owns (the others' moments are
  // freed and left undefined; step() skips parameters without a gradient).
  void shard(const std::vector<bool>& owned);
  bool owns(size_t i) const { return owned_.empty() || owned_[i]; }
  bool sharded() const { return !owned_.empty(); }
  // Moves the moments to `device` (after a checkpoint load: the state is loaded on the host).
  // On a CUDA device step() is one multi-tensor kernel over every parameter with a gradient.
  void to_device(Device device);

 private:
  std::vector<Param>* params_;
  AdamWOptions opt_;
  std::vector<Tensor> m_, v_;
  std::vector<bool> owned_;  // empty = every parameter
  int64_t t_ = 0;
};

// sqrt(sum of squares of every defined grad), accumulated in double.
double grad_global_norm(const std::vector<Param>& params);

// Linear warmup over warmup_steps (lr * (step + 1) / warmup), then cosine decay from lr to
// min_lr at train.steps; step counts from 0.
float lr_at(int64_t step, const config::TrainConfig& t);

}  // namespace cmoe
