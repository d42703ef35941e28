// train_state.cpp — see train_state.h.
#include "moe/train/train_state.h"

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <atomic>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "google/protobuf/util/message_differencer.h"

namespace cmoe {

namespace {

// The slots writer ep_rank (of ep writers of one stage) writes: its expert rows, and the
// replicated units the greedy balance gives it (largest unit first, to the writer with the
// fewest bytes so far, the lowest rank on ties — the same answer on every rank).
std::vector<const StateSlot*> owned_slots(const std::vector<StateSlot>& slots, int ep, int ep_rank) {
  std::map<int, int64_t> unit_bytes;  // replicated units, in unit order
  for (const StateSlot& s : slots)
    if (!s.sliced) unit_bytes[s.unit] += s.local.numel() * static_cast<int64_t>(sizeof(float));
  std::vector<int64_t> sizes;
  for (const auto& [unit, bytes] : unit_bytes) sizes.push_back(bytes);
  const std::vector<int> writer = parallel::balance_by_size(sizes, ep);
  std::map<int, int> owner;
  size_t k = 0;
  for (const auto& [unit, bytes] : unit_bytes) owner[unit] = writer[k++];
  std::vector<const StateSlot*> mine;
  for (const StateSlot& s : slots)
    if (s.sliced || owner[s.unit] == ep_rank) mine.push_back(&s);
  return mine;
}

checkpoint::Manifest manifest_header(const config::RunConfig& cfg, int64_t opt_steps, const RunCounters& counters,
                                     const parallel::ParallelLayout& layout) {
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
  meta.mutable_layout()->set_pp(layout.pp);
  meta.mutable_layout()->set_dp(layout.dp);
  meta.mutable_layout()->set_ep(layout.ep);
  return meta;
}

// --- small collectives over the world (null = one process) ---

// Rank 0's flag on every rank.
absl::StatusOr<bool> broadcast_ok(parallel::Communicator* world, bool ok) {
  if (world == nullptr) return ok;
  Tensor t = Tensor::from_ints({1}, std::vector<int32_t>{ok ? 1 : 0});
  CMOE_RETURN_IF_ERROR(world->broadcast(t, 0));
  return t.data<int32_t>()[0] != 0;
}

// Every rank's bytes, on world rank 0 (empty vector elsewhere).
absl::StatusOr<std::vector<std::string>> gather_bytes(parallel::Communicator* world, const std::string& mine) {
  if (world == nullptr) return std::vector<std::string>{mine};
  const int n = world->size(), me = world->rank();
  Tensor size = Tensor::empty({1}, DType::kI64), sizes = Tensor::empty({n}, DType::kI64);
  size.data<int64_t>()[0] = static_cast<int64_t>(mine.size());
  CMOE_RETURN_IF_ERROR(world->all_gather(sizes, size));
  auto words = [](int64_t bytes) { return std::max<int64_t>(1, (bytes + 3) / 4); };
  constexpr int kTag = 22;
  if (me != 0) {
    Tensor buf = Tensor::zeros({words(static_cast<int64_t>(mine.size()))}, DType::kI32);
    std::memcpy(buf.raw_data(), mine.data(), mine.size());
    CMOE_RETURN_IF_ERROR(world->send(buf, 0, kTag));
    return std::vector<std::string>{};
  }
  std::vector<Tensor> bufs(static_cast<size_t>(n));
  std::vector<parallel::P2POp> ops;
  for (int r = 1; r < n; ++r) {
    bufs[r] = Tensor::empty({words(sizes.data<int64_t>()[r])}, DType::kI32);
    ops.push_back({parallel::P2POp::kRecv, bufs[r], r, kTag});
  }
  CMOE_RETURN_IF_ERROR(world->batch_p2p(ops));
  std::vector<std::string> out(static_cast<size_t>(n));
  out[0] = mine;
  for (int r = 1; r < n; ++r) out[r].assign(static_cast<const char*>(bufs[r].raw_data()), sizes.data<int64_t>()[r]);
  return out;
}

}  // namespace

std::vector<StateSlot> state_layout(const config::ModelConfig& m, const ModelShard& shard) {
  std::vector<StateSlot> slots;
  const std::vector<ParamSpec> specs = param_specs(m, shard);
  for (size_t i = 0; i < specs.size(); ++i) {
    const ParamSpec& p = specs[i];
    const int unit = static_cast<int>(i);
    const Shape global = p.global_shape();
    for (const char* prefix : {"", "optim.exp_avg.", "optim.exp_avg_sq."})
      slots.push_back({absl::StrCat(prefix, p.name), global, p.shape, p.row0, p.sliced, unit, *prefix != 0, Tensor()});
  }
  int unit = static_cast<int>(specs.size());
  for (const ParamSpec& b : router_bias_specs(m, shard)) slots.push_back({b.name, b.shape, b.shape, 0, false, unit++, false, Tensor()});
  return slots;
}

void bind_state(std::vector<StateSlot>& slots, Model& model, const AdamW* opt) {
  const std::vector<Param>& params = model.params();
  const std::vector<Param>& biases = model.router_biases();
  CMOE_CHECK(slots.size() == 3 * params.size() + biases.size(), "bind_state: ", slots.size(), " slots for ",
             params.size(), " parameters and ", biases.size(), " router biases");
  // Checkpoints are device-independent: device state is saved from host copies (and loaded
  // before the model moves to its device, see load_train_state).
  auto host = [](const Tensor& t) { return t.defined() && !t.device().is_cpu() ? t.to(kCPU) : t; };
  for (size_t i = 0; i < params.size(); ++i) {
    CMOE_CHECK(slots[3 * i].name == params[i].name, "bind_state: slot ", slots[3 * i].name, " for ", params[i].name);
    slots[3 * i].data = host(params[i].var.value());
    slots[3 * i + 1].data = opt ? host(opt->exp_avg()[i]) : Tensor();
    slots[3 * i + 2].data = opt ? host(opt->exp_avg_sq()[i]) : Tensor();
  }
  for (size_t i = 0; i < biases.size(); ++i) slots[3 * params.size() + i].data = host(biases[i].var.value());
}

absl::Status check_state_tensors(const CheckpointReader& ck, const config::ModelConfig& m) {
  std::set<std::string> expected;
  for (const StateSlot& s : state_layout(m, ModelShard{})) {
    expected.insert(s.name);
    const CheckpointReader::Info* info = ck.find(s.name);
    if (info == nullptr) {
      return absl::NotFoundError(absl::StrCat(ck.dir(), ": checkpoint has no tensor ", s.name,
                                              ", which the saved config's model needs"));
    }
    if (!(info->shape == s.global) || info->dtype != DType::kF32) {
      return absl::InvalidArgumentError(absl::StrCat(ck.dir(), ": tensor ", s.name, " is ", dtype_name(info->dtype), " ",
                                                     info->shape.str(), ", the saved config's model needs f32 ",
                                                     s.global.str()));
    }
  }
  for (const std::string& name : ck.names()) {
    if (!expected.count(name)) {
      return absl::InvalidArgumentError(absl::StrCat(ck.dir(), ": tensor ", name,
                                                     " has no place in the saved config's model"));
    }
  }
  return absl::OkStatus();
}

std::string shard_file_name(int pp_rank, int ep_rank) { return absl::StrFormat("shard_pp%03d_ep%03d.bin", pp_rank, ep_rank); }
std::string shard_file_name_zero1(int pp_rank, int dp_rank) {
  return absl::StrFormat("shard_pp%03d_dp%03d.bin", pp_rank, dp_rank);
}

// ---------------------------------------------------------------------------------------------
// Saving.

struct TrainStateSaver::Pending {
  int64_t step = 0;
  checkpoint::Manifest meta;  // header (world rank 0)
  std::string tmp;            // staging directory
  bool writer = false;
  std::string file;
  std::vector<ShardTensor> tensors;  // sync: views of the live state
  ShardImage image;                  // async: the snapshot
  bool async = false, direct_io = true;
  std::thread thread;
  std::atomic<bool> done{false};
  absl::StatusOr<std::vector<checkpoint::TensorEntry>> entries{std::vector<checkpoint::TensorEntry>{}};

  void write() {
    entries = async ? checkpoint_write_image(tmp, image, step, direct_io) : checkpoint_write_shard(tmp, file, tensors, step, direct_io);
    done.store(true, std::memory_order_release);
  }
};

TrainStateSaver::TrainStateSaver(std::string root, const config::RunConfig& cfg, parallel::ProcessGroups* groups)
    : root_(std::move(root)), cfg_(cfg), groups_(groups) {}

TrainStateSaver::~TrainStateSaver() {
  if (pending_ && pending_->thread.joinable()) pending_->thread.join();
}

absl::StatusOr<std::string> TrainStateSaver::save(Model& model, AdamW& opt, const RunCounters& counters) {
  if (pending_) CMOE_RETURN_IF_ERROR(finish().status());
  parallel::Communicator* world = groups_ ? groups_->world.get() : nullptr;
  const parallel::ParallelLayout layout = groups_ ? groups_->layout : parallel::ParallelLayout{};
  const bool rank0 = world == nullptr || world->rank() == 0;
  auto p = std::make_unique<Pending>();
  p->step = counters.step;
  // 1. World rank 0 creates the staging directory; everyone learns whether it could.
  absl::Status prepared = absl::OkStatus();
  if (rank0) {
    auto tmp = checkpoint_prepare(root_, counters.step);
    if (tmp.ok()) p->tmp = *tmp;
    else prepared = tmp.status();
    p->meta = manifest_header(cfg_, opt.steps(), counters, layout);
  }
  CMOE_ASSIGN_OR_RETURN(bool ok, broadcast_ok(world, prepared.ok()));
  if (!prepared.ok()) return prepared;
  if (!ok) return absl::InternalError("checkpoint: world rank 0 could not create the staging directory (see its message)");
  if (!rank0) p->tmp = absl::StrCat(root_, "/.tmp-", checkpoint_step_name(counters.step));
  // 2. This rank's share. ZeRO-1: every rank writes the parameters whose optimizer state it
  // owns (and dp rank 0 the router biases); else the first expert-parallel block's ranks.
  const int pp_rank = groups_ ? groups_->place.pp_rank : 0, ep_rank = groups_ ? groups_->place.ep_rank : 0;
  const int dp_rank = groups_ ? groups_->place.dp_rank : 0;
  const bool sharded = opt.sharded();
  p->writer = groups_ == nullptr || sharded || groups_->place.edp_rank == 0;
  const bool async = cfg_.checkpoint().async();
  p->async = async;
  p->direct_io = cfg_.checkpoint().direct_io();
  if (p->writer) {
    p->file = sharded ? shard_file_name_zero1(pp_rank, dp_rank) : shard_file_name(pp_rank, ep_rank);
    std::vector<StateSlot> slots = state_layout(model.config(), model.shard());
    bind_state(slots, model, &opt);
    std::vector<const StateSlot*> mine;
    const int n_params = static_cast<int>(model.params().size());
    if (sharded) {
      for (const StateSlot& s : slots) {
        if (s.unit < n_params ? opt.owns(static_cast<size_t>(s.unit)) : dp_rank == 0) mine.push_back(&s);
      }
    } else {
      mine = owned_slots(slots, layout.ep, ep_rank);
    }
    for (const StateSlot* s : mine) p->tensors.push_back({s->name, s->data, s->global, s->row0});
    if (async) {
      CMOE_ASSIGN_OR_RETURN(p->image, checkpoint_shard_image(p->file, p->tensors, &spare_));
      p->tensors.clear();  // the image holds the copy; no views of the live state are kept
    }
  }
  pending_ = std::move(p);
  if (!async) {
    if (pending_->writer) pending_->write();
    return commit();
  }
  if (pending_->writer) {
    pending_->thread = std::thread([p = pending_.get()] {
      // Below the training threads: the write only needs what they leave over.
      ::setpriority(PRIO_PROCESS, static_cast<id_t>(::syscall(SYS_gettid)), 10);
      p->write();
    });
  } else {
    pending_->done.store(true);
  }
  return std::string();
}

absl::StatusOr<std::string> TrainStateSaver::poll() {
  if (!pending_) return std::string();
  int local = pending_->done.load(std::memory_order_acquire) ? 1 : 0;
  if (groups_ != nullptr) {
    Tensor t = Tensor::from_ints({1}, std::vector<int32_t>{local});
    CMOE_RETURN_IF_ERROR(groups_->world->all_reduce(t, parallel::ReduceOp::kMin));
    local = t.data<int32_t>()[0];
  }
  if (!local) return std::string();
  return commit();
}

absl::StatusOr<std::string> TrainStateSaver::finish() {
  if (!pending_) return std::string();
  return commit();
}

absl::StatusOr<std::string> TrainStateSaver::commit() {
  std::unique_ptr<Pending> p = std::move(pending_);
  if (p->thread.joinable()) p->thread.join();
  if (p->image.bytes) spare_ = std::move(p->image);  // the next snapshot reuses the buffer
  parallel::Communicator* world = groups_ ? groups_->world.get() : nullptr;
  const bool rank0 = world == nullptr || world->rank() == 0;
  // 3. Every rank's entries (or its error) to world rank 0, which commits.
  std::string mine;
  if (!p->entries.ok()) {
    mine = absl::StrCat("E", p->entries.status().message());
  } else {
    checkpoint::Manifest part;
    for (auto& e : *p->entries) *part.add_tensors() = std::move(e);
    mine = absl::StrCat("O", part.SerializeAsString());
  }
  CMOE_ASSIGN_OR_RETURN(std::vector<std::string> parts, gather_bytes(world, mine));
  absl::Status committed = absl::OkStatus();
  std::string dir;
  if (rank0) {
    for (size_t r = 0; r < parts.size() && committed.ok(); ++r) {
      checkpoint::Manifest part;
      if (parts[r].empty() || parts[r][0] != 'O' || !part.ParseFromString(parts[r].substr(1))) {
        committed = absl::InternalError(absl::StrCat("checkpoint step ", p->step, ": world rank ", r, " failed to write its shard: ",
                                                     parts[r].empty() ? "(no reply)" : parts[r].substr(1)));
        break;
      }
      for (auto& e : *part.mutable_tensors()) *p->meta.add_tensors() = std::move(e);
    }
    if (committed.ok()) {
      auto d = checkpoint_commit(root_, std::move(p->meta), cfg_.checkpoint().keep_last());
      if (d.ok()) dir = *d;
      else committed = d.status();
    }
    if (!committed.ok()) checkpoint_abort(root_, p->step);  // a failed save leaves no .tmp-step_N
  }
  CMOE_ASSIGN_OR_RETURN(bool ok, broadcast_ok(world, committed.ok()));
  if (!committed.ok()) return committed;
  if (!ok) return absl::InternalError(absl::StrCat("checkpoint step ", p->step, " was not committed (see world rank 0's message)"));
  return dir;
}

CheckpointPolicy::CheckpointPolicy(const config::CheckpointConfig& c, TrainStateSaver& saver, bool rank0,
                                   std::function<RunCounters(int64_t)> counters)
    : interval_(c.interval()), saver_(saver), rank0_(rank0), counters_(std::move(counters)) {}

bool CheckpointPolicy::save_due(int64_t step, bool last, bool stop) const {
  return last || stop || (interval_ > 0 && step % interval_ == 0);
}

absl::Status CheckpointPolicy::report(const absl::StatusOr<std::string>& dir) {
  if (!dir.ok()) return dir.status();
  if (rank0_ && !dir->empty()) std::printf("checkpoint: %s\n", dir->c_str()), std::fflush(stdout);
  return absl::OkStatus();
}

absl::StatusOr<bool> CheckpointPolicy::at_step_end(int64_t step, bool last, bool stop, Model& model, AdamW& opt) {
  absl::StatusOr<std::string> committed = saver_.poll();  // an asynchronous save's commit
  CMOE_RETURN_IF_ERROR(report(committed));
  bool work = !committed->empty();
  if (save_due(step, last, stop)) {
    CMOE_RETURN_IF_ERROR(report(saver_.save(model, opt, counters_(step))));
    work = true;
  }
  return work;
}

absl::Status CheckpointPolicy::finish() { return report(saver_.finish()); }

// ---------------------------------------------------------------------------------------------
// Loading and resharding.

absl::StatusOr<RunCounters> load_train_state(CheckpointReader& ck, const config::RunConfig& cfg, Model& model,
                                             AdamW* opt) {
  auto saved = config_parse(ck.manifest().config(), ck.dir() + "/manifest.pb (config)");
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
    return absl::InvalidArgumentError(absl::StrCat(ck.dir(), ": the checkpoint's model config differs from this run's:\n",
                                                   report));
  }
  CMOE_RETURN_IF_ERROR(check_state_tensors(ck, saved->model()));
  std::vector<StateSlot> slots = state_layout(model.config(), model.shard());
  CMOE_CHECK(model.device().is_cpu(), "load_train_state: load into the model before moving it to ",
             model.device().str());
  bind_state(slots, model, opt);
  for (const StateSlot& s : slots) {
    if (!s.data.defined()) continue;  // a moment without an optimizer, or ZeRO-1: one another rank owns
    const CheckpointReader::Info* info = ck.find(s.name);
    if (info == nullptr) return absl::NotFoundError(absl::StrCat(ck.dir(), ": checkpoint has no tensor ", s.name));
    if (!(info->shape == s.global) || info->dtype != s.data.dtype()) {
      return absl::InvalidArgumentError(absl::StrCat(ck.dir(), ": tensor ", s.name, " is ", dtype_name(info->dtype), " ",
                                                     info->shape.str(), ", the model expects ", s.global.str(), " ",
                                                     dtype_name(s.data.dtype())));
    }
    CMOE_RETURN_IF_ERROR(ck.read_rows(s.name, s.row0, s.data));
  }
  if (opt != nullptr) opt->set_steps(ck.counter("optimizer.steps"));
  RunCounters c;
  c.step = ck.manifest().step();
  c.tokens_seen = ck.manifest().tokens_seen();
  c.consumed_samples = ck.counter("data.consumed_samples");
  return c;
}

absl::StatusOr<std::string> checkpoint_resolve(const std::string& dir) {
  if (std::filesystem::exists(dir + "/latest")) return checkpoint_latest(dir);
  return dir;
}

absl::StatusOr<CheckpointModel> load_checkpoint_model(const std::string& checkpoint) {
  CheckpointModel out;
  CMOE_ASSIGN_OR_RETURN(out.dir, checkpoint_resolve(checkpoint));
  CMOE_ASSIGN_OR_RETURN(std::unique_ptr<CheckpointReader> ck, CheckpointReader::open(out.dir));
  CMOE_ASSIGN_OR_RETURN(out.cfg, config_parse(ck->manifest().config(), out.dir + "/manifest.pb (config)"));
  CMOE_RETURN_IF_ERROR(config_validate(out.cfg));
  // Every parameter is read from the checkpoint, so none is initialised first.
  out.model = std::make_unique<Model>(out.cfg.model(), out.cfg.train().seed(), ModelShard{}, /*init=*/false);
  CMOE_ASSIGN_OR_RETURN(RunCounters c, load_train_state(*ck, out.cfg, *out.model, nullptr));
  out.step = c.step;
  return out;
}

absl::StatusOr<std::string> reshard_checkpoint(CheckpointReader& src, const config::RunConfig& cfg,
                                               const std::string& out_root) {
  const parallel::ParallelLayout layout{cfg.parallel().pp(), cfg.parallel().dp(), cfg.parallel().ep()};
  CMOE_RETURN_IF_ERROR(parallel::validate_layout(layout, layout.pp * layout.dp));
  CMOE_RETURN_IF_ERROR(config_validate_layout(cfg, layout));
  RunCounters counters{src.manifest().step(), src.manifest().tokens_seen(), src.counter("data.consumed_samples")};
  checkpoint::Manifest meta = manifest_header(cfg, src.counter("optimizer.steps"), counters, layout);
  meta.set_seed(src.manifest().seed());
  CMOE_ASSIGN_OR_RETURN(std::string tmp, checkpoint_prepare(out_root, counters.step));
  std::set<std::string> written;
  for (int stage = 0; stage < layout.pp; ++stage) {
    for (int e = 0; e < layout.ep; ++e) {
      // This writer's slots: names, slices and shapes from the config alone.
      const std::vector<StateSlot> slots =
          state_layout(cfg.model(), pipeline_shard(cfg.model().n_layers(), layout.pp, stage, layout.ep, e));
      std::vector<ShardTensor> tensors;
      for (const StateSlot* s : owned_slots(slots, layout.ep, e)) {
        const CheckpointReader::Info* info = src.find(s->name);
        if (info == nullptr) return absl::NotFoundError(absl::StrCat(src.dir(), ": checkpoint has no tensor ", s->name));
        if (!(info->shape == s->global)) {
          return absl::InvalidArgumentError(absl::StrCat(src.dir(), ": tensor ", s->name, " is ", info->shape.str(),
                                                         ", the config's model expects ", s->global.str()));
        }
        Tensor t = Tensor::empty(s->local, info->dtype);
        CMOE_RETURN_IF_ERROR(src.read_rows(s->name, s->row0, t));
        tensors.push_back({s->name, t, s->global, s->row0});
        written.insert(s->name);
      }
      CMOE_ASSIGN_OR_RETURN(std::vector<checkpoint::TensorEntry> entries,
                            checkpoint_write_shard(tmp, shard_file_name(stage, e), tensors, counters.step,
                                                   cfg.checkpoint().direct_io()));
      for (auto& en : entries) *meta.add_tensors() = std::move(en);
    }
  }
  for (const std::string& name : src.names()) {
    if (!written.count(name)) {
      return absl::InvalidArgumentError(absl::StrCat(src.dir(), ": tensor ", name, " has no place in the config's model"));
    }
  }
  return checkpoint_commit(out_root, std::move(meta), cfg.checkpoint().keep_last());
}

}  // namespace cmoe
