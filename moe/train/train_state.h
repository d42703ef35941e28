// train_state.h — the bridge between a training run's state and checkpoints: names model
// weights as themselves, AdamW moments as "optim.exp_avg.<name>" / "optim.exp_avg_sq.<name>",
// aux-free router biases as their own names; counters carry step, optimizer steps, tokens seen
// and the data loader's consumed samples.
//
// Who writes what (docs/checkpoint-format.md): in a (pp, dp, ep) job the ranks of each stage's
// first expert-parallel block (dp_rank < ep) are the writers; writer (stage s, ep rank e)
// writes shard_pp<s>_ep<e>.bin holding its expert slices (rows [row0, row0 + n) of each
// expert tensor, with their moments) and a share of the stage's replicated tensors (each
// parameter with its two moments goes whole to one writer, largest first to the least-loaded
// writer). The other dp ranks hold copies and write nothing. The manifest records every slice
// with its global shape, so any layout reads any checkpoint: load_train_state reads just the
// rows a rank owns, and reshard_checkpoint rewrites the files for another layout offline.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "checkpoint/checkpoint.h"
#include "moe/model.h"
#include "moe/train/config.h"
#include "moe/train/optimizer.h"
#include "parallel/process_groups.h"

namespace cmoe {

// One tensor of the training state: a parameter (whole, or this rank's expert rows), one of its
// AdamW moments ("optim.exp_avg.<name>", "optim.exp_avg_sq.<name>"), or a router bias.
struct StateSlot {
  std::string name;
  Shape global;          // the whole tensor
  Shape local;           // this rank's part: rows [row0, row0 + local[0]) of dim 0
  int64_t row0 = 0;
  bool sliced = false;   // an expert slice of an expert-parallel job (every writer has its own)
  int unit = 0;          // a parameter and its two moments share a unit (they go to one writer)
  bool optimizer = false;  // an AdamW moment
  Tensor data;           // the live tensor after bind_state (undefined: layout only)
};

// The checkpoint slots of one rank's model shard, in checkpoint order (per parameter: weight,
// exp_avg, exp_avg_sq; then the router biases), derived from the config alone — no model is
// built. With ModelShard{} it is the whole model's state, which is what a checkpoint of
// config `m` must hold, under any layout.
std::vector<StateSlot> state_layout(const config::ModelConfig& m, const ModelShard& shard);
// Points each slot's data at the model's tensors and opt's moments (undefined when opt is null
// or, under ZeRO-1, when another rank owns them). `slots` = state_layout(model's config, shard).
// Tensors on a device are copied to the host instead (checkpoints are device-independent), so
// only a CPU model can be loaded into.
void bind_state(std::vector<StateSlot>& slots, Model& model, const AdamW* opt);
// What a resume checks before reading: every tensor a model of config `m` needs is present as
// f32 with its global shape, and nothing else is there. Errors name the tensor.
absl::Status check_state_tensors(const CheckpointReader& ck, const config::ModelConfig& m);

struct RunCounters {
  int64_t step = 0;
  int64_t tokens_seen = 0;
  int64_t consumed_samples = 0;
};

// "shard_pp000_ep001.bin": the data file of writer (pipeline stage, expert-parallel rank).
std::string shard_file_name(int pp_rank, int ep_rank);
// "shard_pp000_dp003.bin": with the distributed optimizer (ZeRO-1) every rank writes the
// parameters whose optimizer state it owns (with their moments; dp rank 0 also the router
// biases), one file per (stage, dp rank).
std::string shard_file_name_zero1(int pp_rank, int dp_rank);

// Saves training state under root (<run-dir>/checkpoints). Collective over groups->world when
// groups is given (every rank calls every method at the same step); groups null = one process.
//
// Synchronous (checkpoint.async false): save() writes every writer's file and commits before
// returning. Asynchronous: save() copies the rank's share to host memory and returns; a
// background thread writes and fsyncs the file while training goes on; poll(), called at every
// step boundary, commits (manifest, rename, latest) once every rank's file is written (one
// small all-reduce per step while a save is pending); finish() waits and commits. A save
// starting while another is pending finishes the older one first. The background thread never
// calls MPI. Destroying the saver with a save pending waits for its thread and leaves the
// checkpoint uncommitted (the previous one stays latest). Asynchronous saves keep their
// snapshot buffer (the size of the rank's shard) between saves.
class TrainStateSaver {
 public:
  TrainStateSaver(std::string root, const config::RunConfig& cfg, parallel::ProcessGroups* groups);
  ~TrainStateSaver();
  TrainStateSaver(const TrainStateSaver&) = delete;
  TrainStateSaver& operator=(const TrainStateSaver&) = delete;

  // Returns the committed directory on world rank 0 ("" elsewhere, and for a started async save).
  absl::StatusOr<std::string> save(Model& model, AdamW& opt, const RunCounters& counters);
  // Returns the directory committed now on world rank 0, else "".
  absl::StatusOr<std::string> poll();
  absl::StatusOr<std::string> finish();
  bool pending() const { return pending_ != nullptr; }

 private:
  struct Pending;
  absl::StatusOr<std::string> commit();

  std::string root_;
  const config::RunConfig& cfg_;
  parallel::ProcessGroups* groups_;
  std::unique_ptr<Pending> pending_;
  ShardImage spare_;  // async: the last snapshot's buffer, kept for the next one
};

// When a run saves, and the saver's work at each step boundary, in one place: a save after the
// last step, on a stop request, and every checkpoint.interval steps; before it, the commit of
// an asynchronous save whose writers are done. World rank 0 prints "checkpoint: DIR" for each
// commit. Collective like the saver.
class CheckpointPolicy {
 public:
  // counters(step): the run's counters after `step` completed steps.
  CheckpointPolicy(const config::CheckpointConfig& c, TrainStateSaver& saver, bool rank0,
                   std::function<RunCounters(int64_t step)> counters);
  bool save_due(int64_t step, bool last, bool stop) const;
  // After `step` completed steps (last: the run's final step; stop: a stop was requested).
  // Returns whether checkpoint work happened (a save, or a commit), for the metrics record.
  absl::StatusOr<bool> at_step_end(int64_t step, bool last, bool stop, Model& model, AdamW& opt);
  // Waits for an asynchronous save still writing and commits it.
  absl::Status finish();

 private:
  absl::Status report(const absl::StatusOr<std::string>& dir);
  int64_t interval_;
  TrainStateSaver& saver_;
  bool rank0_;
  std::function<RunCounters(int64_t)> counters_;
};

// Loads weights (and, if opt is non-null, optimizer state) from a checkpoint: each parameter's
// rows for this rank, CRC-checked. Fails, before reading, when the checkpoint's model config
// differs from cfg's in anything that shapes parameters or routing, or when its tensors are
// not exactly those of the saved config's model (check_state_tensors), naming the tensor.
absl::StatusOr<RunCounters> load_train_state(CheckpointReader& ck, const config::RunConfig& cfg, Model& model,
                                             AdamW* opt);

// The step directory a checkpoint argument names: the one `DIR/latest` points to when DIR is a
// checkpoints root, else DIR itself.
absl::StatusOr<std::string> checkpoint_resolve(const std::string& dir);

// A whole model on this process, built from a checkpoint's own saved config (its manifest) and
// loaded from it, for inference: no run config needed.
struct CheckpointModel {
  std::string dir;  // the step directory read
  int64_t step = 0;
  config::RunConfig cfg;  // the saved config
  std::unique_ptr<Model> model;
};
absl::StatusOr<CheckpointModel> load_checkpoint_model(const std::string& checkpoint);

// Offline: rewrites checkpoint `src` under out_root (<out_root>/step_N and latest) with the
// shard files of layout `cfg.parallel()` (cfg = the checkpoint's config with the new layout),
// verifying every CRC on the way. Returns the directory written.
absl::StatusOr<std::string> reshard_checkpoint(CheckpointReader& src, const config::RunConfig& cfg,
                                               const std::string& out_root);

}  // namespace cmoe
