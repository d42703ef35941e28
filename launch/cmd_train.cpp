// cmd_train.cpp — `cmoe train` and `cmoe eval`: config -> model, data, optimizer, checkpoints.
//
//   cmoe train --config F --run-dir D [--set k=v]... [--resume CKPT_DIR]
//   cmoe eval  --config F --checkpoint CKPT_DIR [--set k=v]... [--disable-top1] [--json]
// A run directory holds config.textproto (the resolved config), metrics.jsonl and
// checkpoints/ (step_NNNNNNNN/ directories and a `latest` pointer). `train` on a run directory
// that has checkpoints resumes from latest, and says so.
//
// Parallel: `mpirun -np N cmoe train ... --set parallel.pp=P --set parallel.dp=Q --set
// parallel.ep=E` with N = P * Q. Every rank builds its shard of the model (pipeline stage,
// expert slice), reads its data-parallel slice of each global micro-batch, and trains; world
// rank 0 prints and writes config.textproto and metrics.jsonl; checkpoints are written by the
// ranks owning each slice and committed by world rank 0 (launch/train_state.h), and any layout
// can resume any checkpoint. An error on any rank ends the whole job.
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/config/config.h"
#include "data/loader.h"
#include "launch/commands.h"
#include "launch/flags.h"
#include "launch/train_state.h"
#include "moe/params.h"
#include "moe/trainer.h"
#include "parallel/process_groups.h"

namespace cmoe {

namespace {

volatile std::sig_atomic_t g_stop = 0;
void on_sigterm(int) { g_stop = 1; }

int fail(const char* cmd, const absl::Status& s) {
  std::fprintf(stderr, "cmoe %s: %s\n", cmd, std::string(s.message()).c_str());
  return 1;
}

std::vector<data::LoaderSource> train_sources(const config::DataConfig& d) {
  std::vector<data::LoaderSource> out;
  if (!d.prefix().empty()) out.push_back({d.prefix(), 1.0});
  for (const auto& s : d.sources()) out.push_back({s.prefix(), s.weight()});
  return out;
}

// A loader over the train split (train = true) or the validation data.
absl::StatusOr<std::unique_ptr<data::Loader>> open_loader(const config::RunConfig& cfg, bool train,
                                                          int64_t num_samples, int64_t consumed, int dp_size = 1,
                                                          int dp_rank = 0) {
  data::LoaderConfig lc;
  const auto& d = cfg.data();
  if (train || d.valid_prefix().empty()) {
    lc.sources = train_sources(d);
    lc.split = d.split();
  } else {
    lc.sources = {{d.valid_prefix(), 1.0}};
    lc.split = d.valid_split();
  }
  if (lc.sources.empty()) {
    return absl::InvalidArgumentError("config: data.prefix (or data.sources) is not set; point it at a "
                                      "Megatron dataset prefix (PREFIX.bin + PREFIX.idx)");
  }
  lc.split_name = train ? data::Split::kTrain : data::Split::kValid;
  lc.seq_length = cfg.model().seq_len();
  lc.micro_batch = cfg.train().micro_batch_size();
  lc.dp_size = dp_size;
  lc.dp_rank = dp_rank;
  lc.num_samples = num_samples;
  lc.seed = static_cast<uint32_t>(cfg.train().seed());
  lc.prefetch = cfg.data().prefetch();
  lc.vocab_size = cfg.model().vocab_size();
  return data::Loader::open(lc, data::LoaderState{consumed});
}

BatchFn batches_of(std::shared_ptr<data::Loader> loader) {
  return [loader]() -> absl::StatusOr<Batch> {
    CMOE_ASSIGN_OR_RETURN(data::MicroBatch mb, loader->next());
    return Batch{mb.tokens, mb.targets};
  };
}

const std::vector<FlagSpec>& common_specs() {
  static const std::vector<FlagSpec> specs = {
      {"config", true, false, "run config (.textproto)"},
      {"set", true, true, "override a config field: path.to.field=value"},
  };
  return specs;
}

}  // namespace

int cmd_train(int argc, char** argv) {
  std::vector<FlagSpec> specs = common_specs();
  specs.push_back({"run-dir", true, false, "run directory: config, metrics.jsonl, checkpoints/"});
  specs.push_back({"resume", true, false, "resume from this checkpoint directory instead of <run-dir>/checkpoints/latest"});
  auto flags = flags_parse("train", specs, argc, argv, 2);
  if (!flags.ok()) return std::fprintf(stderr, "%s\n", std::string(flags.status().message()).c_str()), 2;
  if (!flags->has("config") || !flags->has("run-dir") || !flags->positional.empty()) {
    std::fprintf(stderr, "cmoe train: --config and --run-dir are required\n%s", flags_usage("train", specs).c_str());
    return 2;
  }
  auto cfg = config_load(flags->get("config"), flags->all("set"));
  if (!cfg.ok()) return fail("train", cfg.status());

  // The job: one process, or the ranks of an MPI launch split into (pp, dp, ep) groups.
  const parallel::ParallelLayout layout{cfg->parallel().pp(), cfg->parallel().dp(), cfg->parallel().ep()};
  auto world = parallel::make_world_communicator();
  if (!world.ok()) return fail("train", world.status());
  const int world_size = (*world)->size();
  if (absl::Status v = parallel::validate_layout(layout, world_size); !v.ok()) {
    absl::Status s(v.code(), absl::StrCat(v.message(), world_size == 1 && layout.pp * layout.dp > 1
                                                           ? " (start the ranks with mpirun -np N, N = pp * dp)"
                                                           : ""));
    if (world_size > 1) parallel::abort_job(s, 2);
    return fail("train", s);
  }
  std::unique_ptr<parallel::ProcessGroups> groups;
  if (world_size > 1) {
    auto g = parallel::make_process_groups(std::move(*world), layout);
    if (!g.ok()) parallel::abort_job(g.status());
    groups = std::make_unique<parallel::ProcessGroups>(std::move(*g));
  }
  const bool rank0 = groups == nullptr || groups->world->rank() == 0;
  // An error on one rank ends the job (its peers would otherwise wait in a collective).
  auto die = [&](const absl::Status& s) {
    if (groups != nullptr) parallel::abort_job(absl::Status(s.code(), absl::StrCat("cmoe train: ", s.message())));
    return fail("train", s);
  };
  const auto& moe_cfg = cfg->model().moe();
  if (layout.ep > 1) {
    const int64_t E = moe_cfg.kind() == config::FINE_GRAINED ? 2 * moe_cfg.num_experts() : moe_cfg.num_experts();
    if (moe_cfg.kind() == config::DENSE || E % layout.ep != 0) {
      return die(absl::InvalidArgumentError(absl::StrCat("parallel.ep = ", layout.ep, " must divide the ", E,
                                                         " experts of each expert set")));
    }
    if (moe_cfg.capacity_factor() > 0) {
      return die(absl::InvalidArgumentError(absl::StrCat(
          "model.moe.capacity_factor = ", moe_cfg.capacity_factor(),
          " with parallel.ep > 1: expert parallelism is dropless (set capacity_factor to 0)")));
    }
  }
  if (layout.pp > cfg->model().n_layers()) {
    return die(absl::InvalidArgumentError(absl::StrCat("parallel.pp = ", layout.pp, " > model.n_layers = ",
                                                       cfg->model().n_layers())));
  }
  if (!rank0 && std::freopen("/dev/null", "w", stdout) == nullptr) return die(absl::InternalError("cannot silence stdout"));  // only rank 0 reports

  const std::string run_dir = flags->get("run-dir"), ckpt_root = run_dir + "/checkpoints";
  if (rank0) {
    std::error_code ec;
    std::filesystem::create_directories(run_dir, ec);
    if (ec) return die(absl::InternalError(absl::StrCat("cannot create run directory ", run_dir, ": ", ec.message())));
    std::ofstream out(run_dir + "/config.textproto");
    out << config_to_text(*cfg);
    if (!out) return die(absl::InternalError(absl::StrCat("cannot write ", run_dir, "/config.textproto")));
  }
  if (groups != nullptr) {
    if (absl::Status b = groups->world->barrier(); !b.ok()) return die(b);  // run dir exists
  }

  const auto& t = cfg->train();
  const uint64_t seed = t.seed();
  std::printf("cmoe train: seed %llu (parameters: Philox(seed, stream = name); data order: numpy MT19937(seed %u))\n",
              static_cast<unsigned long long>(seed), static_cast<uint32_t>(seed));
  const int pp_rank = groups ? groups->place.pp_rank : 0, dp_rank = groups ? groups->place.dp_rank : 0;
  const int ep_rank = groups ? groups->place.ep_rank : 0;
  Model model(cfg->model(), seed, pipeline_shard(cfg->model().n_layers(), layout.pp, pp_rank, layout.ep, ep_rank));
  if (groups != nullptr) model.set_parallel({groups->dp.get(), groups->ep.get()});
  AdamW opt(&model.params(), {t.beta1(), t.beta2(), t.adam_eps(), t.weight_decay()});
  ParamCounts pc = count_params(cfg->model());
  std::printf("model: %s, %.2fM parameters (%.2fM activated), %s\n",
              config::FfnKind_Name(cfg->model().moe().kind()).c_str(), pc.total / 1e6, pc.activated / 1e6,
              t.precision().c_str());
  if (groups != nullptr) {
    std::printf("parallel: %d ranks = pp %d x dp %d, ep %d; global batch %lld sequences (micro-batch %lld per rank x dp %d "
                "x grad_accum %lld)\n",
                world_size, layout.pp, layout.dp, layout.ep,
                static_cast<long long>(t.micro_batch_size() * layout.dp * t.grad_accum()),
                static_cast<long long>(t.micro_batch_size()), layout.dp, static_cast<long long>(t.grad_accum()));
  }

  RunCounters counters;
  std::string resume = flags->get("resume");
  if (resume.empty()) {
    auto latest = checkpoint_latest(ckpt_root);
    if (latest.ok()) resume = *latest;
    else if (!absl::IsNotFound(latest.status())) return die(latest.status());
  }
  if (!resume.empty()) {
    auto ck = CheckpointReader::open(resume);
    if (!ck.ok()) return die(ck.status());
    auto c = load_train_state(**ck, *cfg, model, &opt);
    if (!c.ok()) return die(c.status());
    counters = *c;
    std::printf("resuming from %s at step %lld (%lld samples consumed)\n", resume.c_str(),
                static_cast<long long>(counters.step), static_cast<long long>(counters.consumed_samples));
  }

  const int64_t samples_per_step = t.grad_accum() * t.micro_batch_size() * layout.dp;
  auto train_loader =
      open_loader(*cfg, true, t.steps() * samples_per_step, counters.consumed_samples, layout.dp, dp_rank);
  if (!train_loader.ok()) return die(train_loader.status());
  std::shared_ptr<data::Loader> loader = std::move(*train_loader);

  TrainHooks hooks;
  hooks.next_train = batches_of(loader);
  const config::RunConfig& rc = *cfg;
  hooks.valid_batches = [&rc, &layout, dp_rank]() -> BatchFn {
    auto l = open_loader(rc, false, rc.train().eval_batches() * rc.train().micro_batch_size() * layout.dp, 0,
                         layout.dp, dp_rank);
    if (!l.ok()) {
      absl::Status st = l.status();
      return [st]() -> absl::StatusOr<Batch> { return st; };
    }
    return batches_of(std::shared_ptr<data::Loader>(std::move(*l)));
  };
  TrainStateSaver saver(ckpt_root, rc, groups.get());
  auto report = [rank0](const absl::StatusOr<std::string>& dir) -> absl::Status {
    if (!dir.ok()) return dir.status();
    if (rank0 && !dir->empty()) std::printf("checkpoint: %s\n", dir->c_str()), std::fflush(stdout);
    return absl::OkStatus();
  };
  hooks.save = [&](int64_t step, Model& m, AdamW& o) -> absl::Status {
    RunCounters c{step, step * samples_per_step * rc.model().seq_len(), loader->state().consumed_samples};
    return report(saver.save(m, o, c));
  };
  hooks.step_end = [&](int64_t) -> absl::StatusOr<bool> {
    auto dir = saver.poll();
    CMOE_RETURN_IF_ERROR(report(dir));
    return !dir->empty();  // a commit (the directory is known on world rank 0, which logs it)
  };
  std::signal(SIGTERM, on_sigterm);
  hooks.stop_requested = [] { return g_stop != 0; };

  auto summary = train_loop(*cfg, model, opt, counters.step, run_dir, hooks, groups.get());
  if (!summary.ok()) return die(summary.status());
  if (absl::Status st = report(saver.finish()); !st.ok()) return die(st);  // an asynchronous save still writing
  if (summary->steps_done == counters.step) {
    std::printf("nothing to train: the run is already at step %lld of %lld\n",
                static_cast<long long>(counters.step), static_cast<long long>(t.steps()));
    std::printf("done: step %lld | val loss %.4f | val ppl %.2f\n", static_cast<long long>(summary->steps_done),
                summary->final_eval.loss, summary->final_eval.ppl);
  } else {
    std::printf("done: step %lld | final train loss %.4f | val loss %.4f | val ppl %.2f\n",
                static_cast<long long>(summary->steps_done), summary->final_train_loss, summary->final_eval.loss,
                summary->final_eval.ppl);
  }
  std::printf("metrics: %s/metrics.jsonl | checkpoints: %s (latest: %s/latest)\n", run_dir.c_str(), ckpt_root.c_str(),
              ckpt_root.c_str());
  return 0;
}

int cmd_eval(int argc, char** argv) {
  std::vector<FlagSpec> specs = common_specs();
  specs.push_back({"checkpoint", true, false, "checkpoint directory (step_NNNNNNNN) or a run's checkpoints/ root"});
  specs.push_back({"disable-top1", false, false, "exclude each token's top-1 expert in every router (robustness test)"});
  specs.push_back({"json", false, false, "print JSON"});
  auto flags = flags_parse("eval", specs, argc, argv, 2);
  if (!flags.ok()) return std::fprintf(stderr, "%s\n", std::string(flags.status().message()).c_str()), 2;
  if (!flags->has("config") || !flags->has("checkpoint") || !flags->positional.empty()) {
    std::fprintf(stderr, "cmoe eval: --config and --checkpoint are required\n%s", flags_usage("eval", specs).c_str());
    return 2;
  }
  auto cfg = config_load(flags->get("config"), flags->all("set"));
  if (!cfg.ok()) return fail("eval", cfg.status());
  std::string dir = flags->get("checkpoint");
  if (std::filesystem::exists(dir + "/latest")) {
    auto latest = checkpoint_latest(dir);
    if (!latest.ok()) return fail("eval", latest.status());
    dir = *latest;
  }
  auto ck = CheckpointReader::open(dir);
  if (!ck.ok()) return fail("eval", ck.status());
  Model model(cfg->model(), cfg->train().seed());
  auto c = load_train_state(**ck, *cfg, model, nullptr);
  if (!c.ok()) return fail("eval", c.status());
  auto loader = open_loader(*cfg, false, cfg->train().eval_batches() * cfg->train().micro_batch_size(), 0);
  if (!loader.ok()) return fail("eval", loader.status());
  ForwardOptions fo;
  fo.compute_dtype = cfg->train().precision() == "bf16" ? DType::kBF16 : DType::kF32;
  fo.disable_top1 = flags->has("disable-top1");
  auto ev = evaluate(model, batches_of(std::shared_ptr<data::Loader>(std::move(*loader))), cfg->train().eval_batches(), fo);
  if (!ev.ok()) return fail("eval", ev.status());
  if (flags->has("json")) {
    std::printf("{\"checkpoint\": \"%s\", \"step\": %lld, \"val_loss\": %.6f, \"val_ppl\": %.4f, \"tokens\": %lld, "
                "\"disable_top1\": %s}\n",
                dir.c_str(), static_cast<long long>(c->step), ev->loss, ev->ppl, static_cast<long long>(ev->tokens),
                fo.disable_top1 ? "true" : "false");
  } else {
    std::printf("checkpoint %s (step %lld)%s: val loss %.4f | val ppl %.2f | %lld tokens\n", dir.c_str(),
                static_cast<long long>(c->step), fo.disable_top1 ? " [disable_top1]" : "", ev->loss, ev->ppl,
                static_cast<long long>(ev->tokens));
  }
  return 0;
}

}  // namespace cmoe
