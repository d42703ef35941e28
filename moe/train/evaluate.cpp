// evaluate.cpp — validation loss (see evaluate.h).
#include "moe/train/evaluate.h"

#include <cmath>

#include "parallel/pipeline.h"

namespace cmoe {

absl::StatusOr<EvalResult> evaluate(Model& model, const BatchFn& next, int64_t batches, const ForwardOptions& opt,
                                    parallel::ProcessGroups* groups, int64_t micro_batch_rows) {
  ag::NoGradGuard no_grad;
  // Evaluation is dropless: with a capacity limit a token's loss would depend on the batch it
  // shares (and so on the layout and micro-batch size).
  ForwardOptions fopt = opt;
  fopt.dropless = true;
  const bool parallel = groups != nullptr && groups->world->size() > 1;
  const int stages = parallel ? groups->layout.pp : 1, stage = parallel ? groups->place.pp_rank : 0;
  CMOE_CHECK(stages == 1 || micro_batch_rows > 0, "evaluate: a pipeline needs the batch size");
  EvalResult r;
  double sum = 0;
  std::vector<RouterReport> reports;
  parallel::PipelineStageFns fns;
  fns.forward = [&](int64_t, const Tensor& input) -> absl::StatusOr<Tensor> {
    CMOE_ASSIGN_OR_RETURN(Batch batch, next());
    ForwardResult f = model.forward_stage(batch.ids, input.defined() ? ag::Var(input) : ag::Var(), batch.targets, fopt);
    sum += f.ce * static_cast<double>(f.global_tokens);  // this rank's summed CE
    r.tokens += f.tokens;
    reports.insert(reports.end(), f.routers.begin(), f.routers.end());
    return stage + 1 < stages ? f.hidden.value() : Tensor();
  };
  fns.buffer = [&]() { return Tensor::empty({micro_batch_rows, model.config().d_model()}, DType::kF32, model.device()); };
  CMOE_RETURN_IF_ERROR(parallel::pipeline_run(parallel::pipeline_schedule_forward_only(stages, stage, batches),
                                              parallel ? groups->pp.get() : nullptr, fns));
  if (parallel) {
    Tensor t = Tensor::from_floats({2}, std::vector<float>{static_cast<float>(sum), static_cast<float>(r.tokens)});
    CMOE_RETURN_IF_ERROR(groups->world->all_reduce(t));
    sum = t.data<float>()[0];
    r.tokens = static_cast<int64_t>(t.data<float>()[1] + 0.5f);
  }
  r.loss = r.tokens > 0 ? sum / r.tokens : 0;
  r.ppl = std::exp(r.loss);
  r.routers = merge_reports(reports);
  return r;
}

}  // namespace cmoe
