// evaluate.h — validation loss: mean token cross-entropy over a number of batches, without a
// tape, on one process or collectively over a (pp, dp, ep) job (stages forward in order,
// every rank gets the global result).
#pragma once

#include "absl/status/statusor.h"
#include "moe/model.h"
#include "moe/train/metrics.h"
#include "moe/train/step.h"
#include "parallel/process_groups.h"

namespace cmoe {

// Mean CE over `batches` batches from next. micro_batch_rows = B * T of a batch (the size of a
// stage's input). With groups, collective over the world: every rank evaluates its slice.
absl::StatusOr<EvalResult> evaluate(Model& model, const BatchFn& next, int64_t batches, const ForwardOptions& opt,
                                    parallel::ProcessGroups* groups = nullptr, int64_t micro_batch_rows = 0);

}  // namespace cmoe
