// trainer.cpp — the training loop and the train / eval runs (see trainer.h).
#include "moe/train/trainer.h"

#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "core/cuda/context.h"
#include "core/cuda/cuda_backend.h"
#include "core/ops/matmul.h"
#include "core/profiler.h"
#include "moe/params.h"
#include "moe/train/profile.h"
#include "moe/train/train_data.h"
#include "parallel/comm_factory.h"

namespace cmoe {

absl::StatusOr<TrainSummary> train_loop(TrainLoop& loop, int64_t start_step) {
  const auto& t = loop.cfg.train();
  const int64_t end = t.exit_at_step() > 0 ? t.exit_at_step() : t.steps();
  TrainSummary summary;
  summary.steps_done = start_step;
  auto validate = [&](int64_t step) -> absl::Status {
    if (!loop.validate) return absl::OkStatus();
    prof::Span span("eval", prof::Cat::kEval);
    CMOE_ASSIGN_OR_RETURN(summary.final_eval, loop.validate());
    loop.metrics.eval(step, summary.final_eval);
    return absl::OkStatus();
  };

  for (int64_t step = start_step; step < end; ++step) {
    if (loop.profiler != nullptr) loop.profiler->before_step(step + 1);
    bool stop = false;
    {
      prof::Span iteration("step", prof::Cat::kStep, step + 1);
      CMOE_ASSIGN_OR_RETURN(TrainStep::Result r, loop.step.run(step));
      if (step == start_step && loop.rank0 && !loop.step.describe().empty()) std::printf("%s\n", loop.step.describe().c_str());
      summary.steps_done = step + 1;
      summary.final_train_loss = r.record.loss;
      stop = r.stop && step + 1 < end;
      const bool last = step + 1 == end;
      {
        prof::Span span("metrics", prof::Cat::kOther);
        loop.metrics.step(r.record, start_step, end);
      }
      // Checkpoint work at this step boundary, after the step's record (a crash here loses no
      // record the checkpoint covers), timed apart from the step.
      if (loop.checkpoints != nullptr) {
        prof::Span span("checkpoint", prof::Cat::kCheckpoint);
        const auto tc = std::chrono::steady_clock::now();
        CMOE_ASSIGN_OR_RETURN(bool work, loop.checkpoints->at_step_end(step + 1, last, r.stop, loop.model, loop.opt));
        if (work) loop.metrics.checkpoint(step + 1, std::chrono::duration<double>(std::chrono::steady_clock::now() - tc).count());
      }
      if ((step + 1) % t.eval_interval() == 0 && !last) CMOE_RETURN_IF_ERROR(validate(step + 1));
    }
    if (loop.profiler != nullptr) {
      CMOE_ASSIGN_OR_RETURN(std::string text, loop.profiler->after_step(step + 1));
      if (!text.empty()) std::fputs(text.c_str(), stdout), std::fflush(stdout);
    }
    if (stop) {
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
  Device device = kCPU;  // train.device: this rank's GPU on "cuda"

  // An error on one rank ends the whole job (its peers would otherwise wait in a collective).
  absl::Status fail(const absl::Status& s, const char* cmd) const {
    if (groups != nullptr) parallel::abort_job(absl::Status(s.code(), absl::StrCat("cmoe ", cmd, ": ", s.message())));
    return s;
  }
};

// eval: `cmoe eval`'s layout rule — one process evaluates the whole model whatever the config's
// layout, and a launch of N ranks with no layout in the config is data-parallel over all N.
absl::StatusOr<Job> make_job(const config::RunConfig& cfg, bool eval = false) {
  Job job;
  job.layout = {cfg.parallel().pp(), cfg.parallel().dp(), cfg.parallel().ep()};
  CMOE_ASSIGN_OR_RETURN(std::unique_ptr<parallel::Communicator> world, parallel::make_communicator());
  const int world_size = world->size();
  if (cfg.train().device() == "cuda") {
    // This rank's GPU; every rank learns whether all found theirs (a rank without one must not
    // leave the others waiting in the first collective).
    absl::StatusOr<int> gpu = parallel::local_cuda_device();
    absl::Status st = gpu.ok() ? cuda::init(*gpu) : gpu.status();
    if (world_size > 1) {
      Tensor failed = Tensor::from_ints({1}, std::vector<int32_t>{st.ok() ? 0 : 1});
      if (absl::Status r = world->all_reduce(failed); !r.ok()) parallel::abort_job(r);
      if (failed.data<int32_t>()[0] > 0) {
        parallel::abort_job(absl::FailedPreconditionError(absl::StrCat(
            "train.device = \"cuda\": ", failed.data<int32_t>()[0], " of ", world_size,
            " ranks have no usable GPU; world rank ", world->rank(), ": ", st.ok() ? "ok" : st.message())));
      }
    } else if (!st.ok()) {
      return absl::Status(st.code(), absl::StrCat("train.device = \"cuda\": ", st.message()));
    }
    job.device = cuda_device(*gpu);
  }
  if (eval && world_size == 1) job.layout = {1, 1, 1};
  if (eval && world_size > 1 && job.layout.pp * job.layout.dp == 1) job.layout = {1, world_size, 1};
  if (absl::Status v = parallel::validate_layout(job.layout, world_size); !v.ok()) {
    absl::Status s(v.code(), absl::StrCat(v.message(), world_size == 1 && job.layout.pp * job.layout.dp > 1
                                                           ? " (start the ranks with mpirun -np N, N = pp * dp)"
                                                           : ""));
    if (world_size > 1) parallel::abort_job(s, 2);
    return s;
  }
  if (world_size > 1) {
    absl::StatusOr<parallel::ProcessGroups> g = absl::InternalError("unset");
    if (job.device.is_cpu()) {
      g = parallel::make_process_groups(std::move(world), job.layout);
    } else {
      // Activations and gradients move over a device communicator (NCCL, or host-staged MPI
      // where NCCL cannot serve the job); the host world keeps the control traffic.
      auto data = parallel::make_communicator({.device = job.device, .bootstrap = world.get(), .name = "world"});
      if (!data.ok()) parallel::abort_job(data.status());
      if (world->rank() == 0) {
        std::printf("parallel: activations and gradients over %s (%s)\n", parallel::comm_backend_name(**data).c_str(),
                    job.device.str().c_str());
      }
      g = parallel::make_process_groups(std::move(world), std::move(*data), job.layout);
    }
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
  // Built (or loaded) on the host, the state moves to the GPU once: the same values on any device.
  if (!job.device.is_cpu()) {
    model.to_device(job.device);
    opt.to_device(job.device);
    std::printf("device: %s\n", job.device.str().c_str());
  }
  const int64_t samples_per_step = t.grad_accum() * t.micro_batch_size() * job.layout.dp;
  auto train_loader =
      open_loader(cfg, true, t.steps() * samples_per_step, counters.consumed_samples, job.layout.dp, job.dp_rank);
  if (!train_loader.ok()) return fail(train_loader.status());
  std::shared_ptr<data::Loader> loader = std::move(*train_loader);

  // The run starts: only now does the run directory change.
  if (job.rank0) {
    if (absl::Status w = write_run_config(cfg, run_dir); !w.ok()) return fail(w);
    // Records an earlier process wrote past the step this run continues from are superseded.
    auto dropped = metrics_drop_after(run_dir, counters.step);
    if (!dropped.ok()) return fail(dropped.status());
    if (*dropped > 0) {
      std::printf("metrics: dropped %lld records past step %lld from %s/metrics.jsonl (this run rewrites them)\n",
                  static_cast<long long>(*dropped), static_cast<long long>(counters.step), run_dir.c_str());
    }
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
  // MFU against the matmul peak of the device the run trains on, measured in this process.
  const double peak_flops = (job.device.is_cpu() ? ops::matmul_peak_gflops(compute_dtype(t))
                                                 : cuda::matmul_peak_gflops(job.device, compute_dtype(t))) *
                            1e9;
  auto metrics = MetricsWriter::open(run_dir, job.rank0, model.flops_per_token(), peak_flops, world_size, t.steps(),
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
  StepProfiler profiler(*parse_profile_steps(t.profile_steps()), run_dir, groups ? groups->world->rank() : 0, job.rank0,
                        peak_flops);
  TrainLoop loop{cfg, step, *metrics, &checkpoints,
                 [&]() { return evaluate(model, validation_batches(cfg, dp, dp_rank), t.eval_batches(), eval_opt, groups, rows); },
                 model, opt, job.rank0, &profiler};

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

absl::StatusOr<CheckpointEval> eval_checkpoint(const config::RunConfig& run_cfg, const std::string& checkpoint,
                                               bool disable_top1, const std::string& disable_top1_set) {
  // Evaluation is dropless (evaluate.h), so a capacity factor neither applies nor rules out
  // expert parallelism here.
  config::RunConfig cfg = run_cfg;
  cfg.mutable_model()->mutable_moe()->set_capacity_factor(0);
  CMOE_ASSIGN_OR_RETURN(Job job, make_job(cfg, /*eval=*/true));
  auto fail = [&job](const absl::Status& s) { return job.fail(s, "eval"); };
  if (!job.rank0 && std::freopen("/dev/null", "w", stdout) == nullptr) return fail(absl::InternalError("cannot silence stdout"));
  parallel::ProcessGroups* groups = job.groups.get();
  const parallel::ParallelLayout& l = job.layout;
  if (absl::Status v = config_validate_layout(cfg, l); !v.ok()) return fail(v);
  if (disable_top1) {
    if (absl::Status v = variant_check_disable_top1(resolve_variant(cfg.model())); !v.ok()) return fail(v);
  }
  if (!disable_top1_set.empty()) {
    std::string sets;
    bool found = false;
    for (const ExpertSet& s : resolve_variant(cfg.model()).sets) {
      found = found || s.name == disable_top1_set;
      sets += (sets.empty() ? "" : ", ") + s.name;
    }
    if (!found) {
      return fail(absl::InvalidArgumentError(absl::StrCat("--disable-top1-set ", disable_top1_set, ": the ",
                                                          variant_name(cfg.model().moe().kind()),
                                                          " model has no such expert set (its sets: ",
                                                          sets.empty() ? "none" : sets, ")")));
    }
  }

  CheckpointEval out;
  auto dir = checkpoint_resolve(checkpoint);
  if (!dir.ok()) return fail(dir.status());
  out.dir = *dir;
  auto ck = CheckpointReader::open(out.dir);
  if (!ck.ok()) return fail(ck.status());
  if (groups != nullptr) {
    // Every rank must read the same step: a run committing a checkpoint meanwhile moves `latest`.
    Tensor step = Tensor::empty({1}, DType::kI64);
    step.data<int64_t>()[0] = (*ck)->manifest().step();
    if (absl::Status b = groups->world->broadcast(step, 0); !b.ok()) return fail(b);
    if (step.data<int64_t>()[0] != (*ck)->manifest().step()) {
      return fail(absl::FailedPreconditionError(absl::StrCat(
          "world rank ", groups->world->rank(), " read ", out.dir, " (step ", (*ck)->manifest().step(),
          ") but world rank 0 read step ", step.data<int64_t>()[0],
          ": `latest` moved while loading; pass the step directory instead")));
    }
  }
  Model model(cfg.model(), cfg.train().seed(),
              pipeline_shard(cfg.model().n_layers(), l.pp, job.pp_rank, l.ep, job.ep_rank), /*init=*/false);
  if (groups != nullptr) model.set_parallel({groups->dp.get(), groups->ep.get()});
  auto c = load_train_state(**ck, cfg, model, nullptr);
  if (!c.ok()) return fail(c.status());
  out.step = c->step;
  if (!job.device.is_cpu()) model.to_device(job.device);
  ForwardOptions fo;
  fo.compute_dtype = compute_dtype(cfg.train());
  fo.disable_top1 = disable_top1;
  fo.disable_top1_set = disable_top1_set;
  // The validation batches split over dp as in training: eval_batches micro-batches per rank.
  auto r = evaluate(model, validation_batches(cfg, l.dp, job.dp_rank), cfg.train().eval_batches(), fo, groups,
                    cfg.train().micro_batch_size() * cfg.model().seq_len());
  if (!r.ok()) return fail(r.status());
  out.result = std::move(*r);
  return out;
}

}  // namespace cmoe
