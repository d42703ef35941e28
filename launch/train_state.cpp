// train_state.cpp — see train_state.h.
#include "launch/train_state.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "google/protobuf/util/message_differencer.h"

namespace cmoe {

absl::StatusOr<std::string> save_train_state(const std::string& root, const config::RunConfig& cfg, Model& model,
                                             AdamW& opt, const RunCounters& counters) {
  std::vector<NamedTensor> tensors;
  for (Param& p : model.params()) tensors.push_back({p.name, p.var.value()});
  for (size_t i = 0; i < model.params().size(); ++i) {
    tensors.push_back({"optim.exp_avg." + model.params()[i].name, opt.exp_avg()[i]});
    tensors.push_back({"optim.exp_avg_sq." + model.params()[i].name, opt.exp_avg_sq()[i]});
  }
  for (Param& b : model.router_biases()) tensors.push_back({b.name, b.var.value()});
  checkpoint::Manifest meta;
  meta.set_config(config_to_text(cfg));
  meta.set_step(counters.step);
  meta.set_tokens_seen(counters.tokens_seen);
  meta.set_seed(cfg.train().seed());
  auto add = [&](const char* name, int64_t v) {
    auto* c = meta.add_counters();
    c->set_name(name);
    c->set_value(v);
  };
  add("optimizer.steps", opt.steps());
  add("data.consumed_samples", counters.consumed_samples);
  return checkpoint_save(root, meta, tensors, cfg.checkpoint().keep_last());
}

namespace {
absl::Status restore(const LoadedCheckpoint& ck, const std::string& name, Tensor& dst) {
  auto it = ck.tensors.find(name);
  if (it == ck.tensors.end()) {
    return absl::NotFoundError(absl::StrCat(ck.dir, ": checkpoint has no tensor ", name));
  }
  if (!(it->second.shape() == dst.shape()) || it->second.dtype() != dst.dtype()) {
    return absl::InvalidArgumentError(absl::StrCat(ck.dir, ": tensor ", name, " is ", it->second.str(),
                                                   ", the model expects ", dst.str()));
  }
  dst.copy_from(it->second);
  return absl::OkStatus();
}
}  // namespace

absl::StatusOr<RunCounters> load_train_state(const LoadedCheckpoint& ck, const config::RunConfig& cfg, Model& model,
                                             AdamW* opt) {
  auto saved = config_parse(ck.manifest.config(), ck.dir + "/manifest.pb (config)");
  if (!saved.ok()) return saved.status();
  google::protobuf::util::MessageDifferencer diff;
  std::string report;
  diff.ReportDifferencesToString(&report);
  if (!diff.Compare(saved->model(), cfg.model())) {
    return absl::InvalidArgumentError(absl::StrCat(ck.dir, ": the checkpoint's model config differs from this run's:\n",
                                                   report));
  }
  for (Param& p : model.params()) CMOE_RETURN_IF_ERROR(restore(ck, p.name, p.var.mutable_value()));
  for (Param& b : model.router_biases()) CMOE_RETURN_IF_ERROR(restore(ck, b.name, b.var.mutable_value()));
  if (opt != nullptr) {
    for (size_t i = 0; i < model.params().size(); ++i) {
      CMOE_RETURN_IF_ERROR(restore(ck, "optim.exp_avg." + model.params()[i].name, opt->exp_avg()[i]));
      CMOE_RETURN_IF_ERROR(restore(ck, "optim.exp_avg_sq." + model.params()[i].name, opt->exp_avg_sq()[i]));
    }
    opt->set_steps(ck.counter("optimizer.steps"));
  }
  RunCounters c;
  c.step = ck.manifest.step();
  c.tokens_seen = ck.manifest.tokens_seen();
  c.consumed_samples = ck.counter("data.consumed_samples");
  return c;
}

}  // namespace cmoe
