// trainer.cpp — the training loop and the train / eval runs (see trainer.h).
#include "moe/train/trainer.h"

#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "core/ops/matmul.h"
#include "moe/params.h"
#include "moe/train/train_data.h"

namespace cmoe {

absl::StatusOr<TrainSummary> train_loop(TrainLoop& loop, int64_t start_step) {
  const auto& t = loop.cfg.train();
  const int64_t end = t.exit_at_step() > 0 ? t.exit_at_step() : t.steps();
  TrainSummary summary;
  summary.steps_done = start_step;
  auto validate = [&](int64_t step) -> absl::Status {
    if (!loop.validate) return absl::OkStatus();
    CMOE_ASSIGN_OR_RETURN(summary.final_eval, loop.validate());
    loop.metrics.eval(step, summary.final_eval);
    return absl::OkStatus();
  };

  for (int64_t step = start_step; step < end; ++step) {
    CMOE_ASSIGN_OR_RETURN(TrainStep::Result r, loop.step.run(step));
    if (step == start_step && loop.rank0 && !loop.step.describe().empty()) std::printf("%s\n", loop.step.describe().c_str());
    summary.steps_done = step + 1;
    summary.final_train_loss = r.record.loss;
    const bool last = step + 1 == end;
    loop.metrics.step(r.record, start_step, end);

    // Checkpoint work at this step boundary, after the step's record (a crash here loses no
    // record the checkpoint covers), timed apart from the step.
    if (loop.checkpoints != nullptr) {
      const auto tc = std::chrono::steady_clock::now();
      CMOE_ASSIGN_OR_RETURN(bool work, loop.checkpoints->at_step_end(step + 1, last, r.stop, loop.model, loop.opt));
      if (work) loop.metrics.checkpoint(step + 1, std::chrono::duration<double>(std::chrono::steady_clock::now() - tc).count());
    }
    if ((step + 1) % t.eval_interval() == 0 && !last) CMOE_RETURN_IF_ERROR(validate(step + 1));
    if (r.stop && !last) {
      if (loop.rank0) std::printf("stopping at step %lld on request (checkpoint saved)\n", static_cast<long long>(step + 1));
      return summary;
    }
  }
  CMOE_RETURN_IF_ERROR(validate(summary.steps_done));
  return summary;
}

namespace {

volatile std::sig_atomic_t g_stop = 0;
void on_sigterm(int) { g_stop = 1; }

// The job: this process alone, or its place in an MPI launch split into (pp, dp, ep) groups.
struct Job {
  parallel::ParallelLayout layout;
  std::unique_ptr<parallel::ProcessGroups> groups;  // null on one process
  bool rank0 = true;
  int pp_rank = 0, dp_rank = 0, ep_rank = 0;

  // An error on one rank ends the whole job (its peers would otherwise wait in a collective).
  absl::Status fail(const absl::Status& s, const char* cmd) const {
    if (groups != nullptr) parallel::abort_job(absl::Status(s.code(), absl::StrCat("cmoe ", cmd, ": ", s.message())));
    return s;
  }
};

absl::StatusOr<Job> make_job(const config::RunConfig& cfg) {
  Job job;
  job.layout = {cfg.parallel().pp(), cfg.parallel().dp(), cfg.parallel().ep()};
  CMOE_ASSIGN_OR_RETURN(std::unique_ptr<parallel::Communicator> world, parallel::make_world_communicator());
  const int world_size = world->size();
  if (absl::Status v = parallel::validate_layout(job.layout, world_size); !v.ok()) {
    absl::Status s(v.code(), absl::StrCat(v.message(), world_size == 1 && job.layout.pp * job.layout.dp > 1
                                                           ? " (start the ranks with mpirun -np N, N = pp * dp)"
                                                           : ""));
    if (world_size > 1) parallel::abort_job(s, 2);
    return s;
  }
  if (world_size > 1) {
    auto g = parallel::make_process_groups(std::move(world), job.layout);
    if (!g.ok()) parallel::abort_job(g.status());
    job.groups = std::make_unique<parallel::ProcessGroups>(std::move(*g));
    job.rank0 = job.groups->world->rank() == 0;
    job.pp_rank = job.groups->place.pp_rank;
    job.dp_rank = job.groups->place.dp_rank;
    job.ep_rank = job.groups->place.ep_rank;
  }
  return job;
}

// Writes cfg as run_dir/config.textproto (world rank 0), creating run_dir.
absl::Status write_run_config(const config::RunConfig& cfg, const std::string& run_dir) {
  std::error_code ec;
  std::filesystem::create_directories(run_dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot create run directory ", run_dir, ": ", ec.message()));
  // Written aside and renamed, so a crash never leaves a half-written config.
  const std::string path = run_dir + "/config.textproto", tmp = path + ".tmp";
  {
    std::ofstream out(tmp);
    out << config_to_text(cfg);
    if (!out) return absl::InternalError(absl::StrCat("cannot write ", tmp));
  }
  std::filesystem::rename(tmp, path, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot rename ", tmp, " to ", path, ": ", ec.message()));
  return absl::OkStatus();
}

}  // namespace

absl::Status train_run(const config::RunConfig& cfg, const std::string& run_dir, const std::string& resume_dir) {
  CMOE_ASSIGN_OR_RETURN(Job job, make_job(cfg));
  auto fail = [&job](const absl::Status& s) { return job.fail(s, "train"); };
  if (!job.rank0 && std::freopen("/dev/null", "w", stdout) == nullptr) return fail(absl::InternalError("cannot silence stdout"));
  parallel::ProcessGroups* groups = job.groups.get();
  const auto& t = cfg.train();
  const uint64_t seed = t.seed();
  const std::string ckpt_root = run_dir + "/checkpoints";
  std::printf("cmoe train: seed %llu (parameters: Philox(seed, stream = name); data order: numpy MT19937(seed %u))\n",
              static_cast<unsigned long long>(seed), static_cast<uint32_t>(seed));

  Model model(cfg.model(), seed, pipeline_shard(cfg.model().n_layers(), job.layout.pp, job.pp_rank, job.layout.ep, job.ep_rank));
  if (groups != nullptr) model.set_parallel({groups->dp.get(), groups->ep.get()});
  AdamW opt(&model.params(), {t.beta1(), t.beta2(), t.adam_eps(), t.weight_decay()});
  const ParamCounts pc = count_params(cfg.model());
  std::printf("model: %s, %.2fM parameters (%.2fM activated), %s\n", config::FfnKind_Name(cfg.model().moe().kind()).c_str(),
              pc.total / 1e6, pc.activated / 1e6, t.precision().c_str());
  if (groups != nullptr) {
    const auto& l = job.layout;
    std::printf("parallel: %d ranks = pp %d x dp %d, ep %d; global batch %lld sequences (micro-batch %lld per rank x dp %d "
                "x grad_accum %lld)\n",
                groups->world->size(), l.pp, l.dp, l.ep, static_cast<long long>(t.micro_batch_size() * l.dp * t.grad_accum()),
                static_cast<long long>(t.micro_batch_size()), l.dp, static_cast<long long>(t.grad_accum()));
  }

  // Resume: --resume, else the run's latest checkpoint, else a fresh start.
  RunCounters counters;
  std::string resume = resume_dir;
  if (resume.empty()) {
    auto latest = checkpoint_latest(ckpt_root);
    if (latest.ok()) resume = *latest;
    else if (!absl::IsNotFound(latest.status())) return fail(latest.status());
  }
  if (!resume.empty()) {
    auto ck = CheckpointReader::open(resume);
    if (!ck.ok()) return fail(ck.status());
    auto c = load_train_state(**ck, cfg, model, &opt);
    if (!c.ok()) return fail(c.status());
    counters = *c;
  }
  const int64_t samples_per_step = t.grad_accum() * t.micro_batch_size() * job.layout.dp;
  auto train_loader =
      open_loader(cfg, true, t.steps() * samples_per_step, counters.consumed_samples, job.layout.dp, job.dp_rank);
  if (!train_loader.ok()) return fail(train_loader.status());
  std::shared_ptr<data::Loader> loader = std::move(*train_loader);

  // The run starts: only now does the run directory change.
  if (job.rank0) {
    if (absl::Status w = write_run_config(cfg, run_dir); !w.ok()) return fail(w);
  }
  if (groups != nullptr) {
    if (absl::Status b = groups->world->barrier(); !b.ok()) return fail(b);  // run dir exists
  }
  if (!resume.empty()) {
    std::printf("resuming from %s at step %lld (%lld samples consumed)\n", resume.c_str(),
                static_cast<long long>(counters.step), static_cast<long long>(counters.consumed_samples));
  }

  std::signal(SIGTERM, on_sigterm);
  TrainStep step(cfg, model, opt, groups, batches_of(loader), [] { return g_stop != 0; });
  const int world_size = groups != nullptr ? groups->world->size() : 1;
  auto metrics = MetricsWriter::open(run_dir, job.rank0, model.flops_per_token(),
                                     ops::matmul_peak_gflops(compute_dtype(t)) * 1e9, world_size, t.steps(),
                                     t.log_interval(), t.tensorboard());
  if (!metrics.ok()) return fail(metrics.status());
  TrainStateSaver saver(ckpt_root, cfg, groups);
  CheckpointPolicy checkpoints(cfg.checkpoint(), saver, job.rank0, [&](int64_t s) {
    return RunCounters{s, s * samples_per_step * cfg.model().seq_len(), loader->state().consumed_samples};
  });
  ForwardOptions eval_opt;
  eval_opt.compute_dtype = compute_dtype(t);
  const int64_t rows = t.micro_batch_size() * cfg.model().seq_len();
  const int dp = job.layout.dp, dp_rank = job.dp_rank;
  TrainLoop loop{cfg, step, *metrics, &checkpoints,
                 [&]() { return evaluate(model, validation_batches(cfg, dp, dp_rank), t.eval_batches(), eval_opt, groups, rows); },
                 model, opt, job.rank0};

  auto summary = train_loop(loop, counters.step);
  if (!summary.ok()) return fail(summary.status());
  if (absl::Status st = checkpoints.finish(); !st.ok()) return fail(st);  // an asynchronous save still writing
  if (summary->steps_done == counters.step) {
    std::printf("nothing to train: the run is already at step %lld of %lld\n", static_cast<long long>(counters.step),
                static_cast<long long>(t.steps()));
    std::printf("done: step %lld | val loss %.4f | val ppl %.2f\n", static_cast<long long>(summary->steps_done),
                summary->final_eval.loss, summary->final_eval.ppl);
  } else {
    std::printf("done: step %lld | final train loss %.4f | val loss %.4f | val ppl %.2f\n",
                static_cast<long long>(summary->steps_done), summary->final_train_loss, summary->final_eval.loss,
                summary->final_eval.ppl);
  }
  std::printf("metrics: %s/metrics.jsonl | checkpoints: %s (latest: %s/latest)\n", run_dir.c_str(), ckpt_root.c_str(),
              ckpt_root.c_str());
  return absl::OkStatus();
}

absl::StatusOr<CheckpointEval> eval_checkpoint(const config::RunConfig& cfg, const std::string& checkpoint,
                                               bool disable_top1, const std::string& disable_top1_set) {
  if (!disable_top1_set.empty()) {
    std::string sets;
    bool found = false;
    for (const ExpertSet& s : resolve_variant(cfg.model()).sets) {
      found = found || s.name == disable_top1_set;
      sets += (sets.empty() ? "" : ", ") + s.name;
    }
    if (!found) {
      return absl::InvalidArgumentError(absl::StrCat("--disable-top1-set ", disable_top1_set, ": the ",
                                                     variant_name(cfg.model().moe().kind()),
                                                     " model has no such expert set (its sets: ",
                                                     sets.empty() ? "none" : sets, ")"));
    }
  }
  CheckpointEval out;
  out.dir = checkpoint;
  if (std::filesystem::exists(checkpoint + "/latest")) {
    CMOE_ASSIGN_OR_RETURN(out.dir, checkpoint_latest(checkpoint));
  }
  CMOE_ASSIGN_OR_RETURN(std::unique_ptr<CheckpointReader> ck, CheckpointReader::open(out.dir));
  Model model(cfg.model(), cfg.train().seed());
  CMOE_ASSIGN_OR_RETURN(RunCounters c, load_train_state(*ck, cfg, model, nullptr));
  out.step = c.step;
  CMOE_ASSIGN_OR_RETURN(std::unique_ptr<data::Loader> loader,
                        open_loader(cfg, false, cfg.train().eval_batches() * cfg.train().micro_batch_size(), 0));
  ForwardOptions fo;
  fo.compute_dtype = compute_dtype(cfg.train());
  fo.disable_top1 = disable_top1;
  fo.disable_top1_set = disable_top1_set;
  CMOE_ASSIGN_OR_RETURN(out.result, evaluate(model, batches_of(std::shared_ptr<data::Loader>(std::move(loader))),
                                             cfg.train().eval_batches(), fo));
  return out;
}

}  // namespace cmoe
