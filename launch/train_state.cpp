// train_state.cpp — see train_state.h.
#include "launch/train_state.h"

#include <array>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "google/protobuf/util/message_differencer.h"

namespace cmoe {

namespace {

// Weights, AdamW moments and router biases, named as in the checkpoint, in a fixed order.
std::vector<NamedTensor> state_tensors(Model& model, std::vector<Tensor>& m, std::vector<Tensor>& v) {
  std::vector<NamedTensor> tensors;
  for (Param& p : model.params()) tensors.push_back({p.name, p.var.value()});
  for (size_t i = 0; i < model.params().size(); ++i) {
    tensors.push_back({"optim.exp_avg." + model.params()[i].name, m[i]});
    tensors.push_back({"optim.exp_avg_sq." + model.params()[i].name, v[i]});
  }
  for (Param& b : model.router_biases()) tensors.push_back({b.name, b.var.value()});
  return tensors;
}

absl::StatusOr<std::string> write_state(const std::string& root, const config::RunConfig& cfg, int64_t opt_steps,
                                        const RunCounters& counters, const std::vector<NamedTensor>& tensors) {
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
  add("optimizer.steps", opt_steps);
  add("data.consumed_samples", counters.consumed_samples);
  return checkpoint_save(root, meta, tensors, cfg.checkpoint().keep_last());
}

}  // namespace

absl::StatusOr<std::string> save_train_state(const std::string& root, const config::RunConfig& cfg, Model& model,
                                             AdamW& opt, const RunCounters& counters) {
  return write_state(root, cfg, opt.steps(), counters, state_tensors(model, opt.exp_avg(), opt.exp_avg_sq()));
}

absl::StatusOr<std::string> save_train_state_parallel(const std::string& root, const config::RunConfig& cfg,
                                                      Model& model, AdamW& opt, const RunCounters& counters,
                                                      parallel::ProcessGroups& groups) {
  const parallel::RankPlacement& me = groups.place;
  const int ep = groups.layout.ep;
  const bool first_block = me.edp_rank == 0;  // dp ranks 0 .. ep-1 of this stage
  if (!first_block) return std::string();
  // 1. Whole expert tensors on this stage's dp rank 0: all-gather the slices over ep (value
  //    and both moments; equal slices since ep divides every expert count).
  std::vector<Tensor> values, m, v;
  for (size_t i = 0; i < model.params().size(); ++i) {
    const Param& p = model.params()[i];
    std::array<Tensor, 3> local = {p.var.value(), opt.exp_avg()[i], opt.exp_avg_sq()[i]};
    std::array<Tensor, 3> full = local;
    if (p.expert && ep > 1) {
      for (int k = 0; k < 3; ++k) {
        Shape s = local[k].shape();
        s[0] = p.global_rows;
        full[k] = Tensor::empty(s, DType::kF32);
        CMOE_RETURN_IF_ERROR(groups.ep->all_gather(full[k], local[k]));
      }
    }
    values.push_back(full[0]), m.push_back(full[1]), v.push_back(full[2]);
  }
  if (me.dp_rank != 0) return std::string();
  // 2. Stage leaders send their tensors to world rank 0 (pp rank 0 of the same pp group), in
  //    state_tensors order; rank 0 receives into an uninitialised model of that stage.
  constexpr int kTag = 21;
  const int stage = me.pp_rank, stages = groups.layout.pp;
  std::vector<NamedTensor> all = state_tensors(model, m, v);
  for (size_t i = 0; i < values.size(); ++i) all[i].tensor = values[i];
  if (stage != 0) {
    for (const NamedTensor& t : all) CMOE_RETURN_IF_ERROR(groups.pp->send(t.tensor, 0, kTag));
    return std::string();
  }
  for (int s = 1; s < stages; ++s) {
    ModelShard shard = pipeline_shard(cfg.model().n_layers(), stages, s, 1, 0);
    Model other(cfg.model(), cfg.train().seed(), shard, false);
    std::vector<Tensor> om, ov;
    for (Param& p : other.params()) {
      om.push_back(Tensor::empty(p.var.value().shape(), DType::kF32));
      ov.push_back(Tensor::empty(p.var.value().shape(), DType::kF32));
    }
    std::vector<NamedTensor> ts = state_tensors(other, om, ov);
    for (NamedTensor& t : ts) CMOE_RETURN_IF_ERROR(groups.pp->recv(t.tensor, s, kTag));
    all.insert(all.end(), ts.begin(), ts.end());
  }
  return write_state(root, cfg, opt.steps(), counters, all);
}

namespace {
// dst = the checkpoint's tensor, or rows [row0, row0 + dst.dim(0)) of it when the tensor is
// an expert slice (global_rows > 0): a checkpoint holds global tensors whatever the layout.
absl::Status restore(const LoadedCheckpoint& ck, const std::string& name, Tensor& dst, int64_t row0 = 0,
                     int64_t global_rows = 0) {
  auto it = ck.tensors.find(name);
  if (it == ck.tensors.end()) {
    return absl::NotFoundError(absl::StrCat(ck.dir, ": checkpoint has no tensor ", name));
  }
  Shape want = dst.shape();
  if (global_rows > 0) want[0] = global_rows;
  if (!(it->second.shape() == want) || it->second.dtype() != dst.dtype()) {
    return absl::InvalidArgumentError(absl::StrCat(ck.dir, ": tensor ", name, " is ", it->second.str(),
                                                   ", the model expects ", want.str(), " ", dtype_name(dst.dtype())));
  }
  dst.copy_from(global_rows > 0 ? it->second.slice0(row0, row0 + dst.dim(0)) : it->second);
  return absl::OkStatus();
}
}  // namespace

absl::StatusOr<RunCounters> load_train_state(const LoadedCheckpoint& ck, const config::RunConfig& cfg, Model& model,
                                             AdamW* opt) {
  auto saved = config_parse(ck.manifest.config(), ck.dir + "/manifest.pb (config)");
  if (!saved.ok()) return saved.status();
  // Only what shapes the parameters or the routing must agree; training hyperparameters
  // (balance-loss coefficients, capacity, sequence length, RoPE base...) may change on resume.
  auto architecture = [](config::ModelConfig m) {
    config_materialise(m);
    for (auto* f : {"seq_len", "rope_theta", "norm_eps", "init_std"}) m.GetReflection()->ClearField(&m, m.GetDescriptor()->FindFieldByName(f));
    config::MoeConfig* moe = m.mutable_moe();
    for (auto* f : {"top_p", "aux_loss_coef", "z_loss_coef", "aux_free_bias_rate", "capacity_factor"})
      moe->GetReflection()->ClearField(moe, moe->GetDescriptor()->FindFieldByName(f));
    return m;
  };
  google::protobuf::util::MessageDifferencer diff;
  std::string report;
  diff.ReportDifferencesToString(&report);
  if (!diff.Compare(architecture(saved->model()), architecture(cfg.model()))) {
    return absl::InvalidArgumentError(absl::StrCat(ck.dir, ": the checkpoint's model config differs from this run's:\n",
                                                   report));
  }
  for (Param& p : model.params()) {
    CMOE_RETURN_IF_ERROR(restore(ck, p.name, p.var.mutable_value(), p.row0, p.expert ? p.global_rows : 0));
  }
  for (Param& b : model.router_biases()) CMOE_RETURN_IF_ERROR(restore(ck, b.name, b.var.mutable_value()));
  if (opt != nullptr) {
    for (size_t i = 0; i < model.params().size(); ++i) {
      const Param& p = model.params()[i];
      const int64_t rows = p.expert ? p.global_rows : 0;
      CMOE_RETURN_IF_ERROR(restore(ck, "optim.exp_avg." + p.name, opt->exp_avg()[i], p.row0, rows));
      CMOE_RETURN_IF_ERROR(restore(ck, "optim.exp_avg_sq." + p.name, opt->exp_avg_sq()[i], p.row0, rows));
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
