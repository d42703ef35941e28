// param.h — a model parameter: a named trainable leaf plus what the optimizer and the
// parallel layers need to know about it.
//
// Lives in autograd (not moe) because the layers that consume parameters — the optimizer,
// the data-parallel gradient reducer (parallel/), checkpoints — must not depend on the model.
#pragma once

#include <cstdint>
#include <string>

#include "autograd/variable.h"

namespace cmoe {

struct Param {
  std::string name;
  ag::Var var;        // f32 master weight; grad accumulates here
  bool decay = true;  // AdamW weight decay (off for norms and gate biases)
  // Expert-parallel slice: var holds rows [row0, row0 + dim 0) of a global tensor of
  // global_rows rows. `expert` marks every expert tensor of an expert-parallel job (its
  // gradient is reduced over the expert-data-parallel group, not the data-parallel one).
  bool expert = false;
  int64_t row0 = 0, global_rows = 0;
};

}  // namespace cmoe
