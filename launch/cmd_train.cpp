// cmd_train.cpp — `cmoe train` and `cmoe eval`: config -> model, data, optimizer, checkpoints.
//
//   cmoe train --config F --run-dir D [--set k=v]... [--resume CKPT_DIR]
//   cmoe eval  --config F --checkpoint CKPT_DIR [--set k=v]... [--disable-top1] [--json]
// A run directory holds config.textproto (the resolved config), metrics.jsonl and
// checkpoints/ (step_NNNNNNNN/ directories and a `latest` pointer). `train` on a run directory
// that has checkpoints resumes from latest, and says so.
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
                                                          int64_t num_samples, int64_t consumed) {
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
  if (cfg->parallel().pp() * cfg->parallel().dp() != 1) {
    return fail("train", absl::UnimplementedError(absl::StrCat(
                             "parallel.pp = ", cfg->parallel().pp(), ", parallel.dp = ", cfg->parallel().dp(),
                             ": multi-rank training is not available in this build yet (single process only)")));
  }
  const std::string run_dir = flags->get("run-dir"), ckpt_root = run_dir + "/checkpoints";
  std::error_code ec;
  std::filesystem::create_directories(run_dir, ec);
  if (ec) return fail("train", absl::InternalError(absl::StrCat("cannot create run directory ", run_dir, ": ", ec.message())));
  {
    std::ofstream out(run_dir + "/config.textproto");
    out << config_to_text(*cfg);
    if (!out) return fail("train", absl::InternalError(absl::StrCat("cannot write ", run_dir, "/config.textproto")));
  }

  const auto& t = cfg->train();
  const uint64_t seed = t.seed();
  std::printf("cmoe train: seed %llu (parameters: Philox(seed, stream = name); data order: numpy MT19937(seed %u))\n",
              static_cast<unsigned long long>(seed), static_cast<uint32_t>(seed));
  Model model(cfg->model(), seed);
  AdamW opt(&model.params(), {t.beta1(), t.beta2(), t.adam_eps(), t.weight_decay()});
  ParamCounts pc = count_params(cfg->model());
  std::printf("model: %s, %.2fM parameters (%.2fM activated), %s\n",
              config::FfnKind_Name(cfg->model().moe().kind()).c_str(), pc.total / 1e6, pc.activated / 1e6,
              t.precision().c_str());

  RunCounters counters;
  std::string resume = flags->get("resume");
  if (resume.empty()) {
    auto latest = checkpoint_latest(ckpt_root);
    if (latest.ok()) resume = *latest;
    else if (!absl::IsNotFound(latest.status())) return fail("train", latest.status());
  }
  if (!resume.empty()) {
    auto ck = checkpoint_load(resume);
    if (!ck.ok()) return fail("train", ck.status());
    auto c = load_train_state(*ck, *cfg, model, &opt);
    if (!c.ok()) return fail("train", c.status());
    counters = *c;
    std::printf("resuming from %s at step %lld (%lld samples consumed)\n", resume.c_str(),
                static_cast<long long>(counters.step), static_cast<long long>(counters.consumed_samples));
  }

  const int64_t samples_per_step = t.grad_accum() * t.micro_batch_size();
  auto train_loader = open_loader(*cfg, true, t.steps() * samples_per_step, counters.consumed_samples);
  if (!train_loader.ok()) return fail("train", train_loader.status());
  std::shared_ptr<data::Loader> loader = std::move(*train_loader);

  TrainHooks hooks;
  hooks.next_train = batches_of(loader);
  const config::RunConfig& rc = *cfg;
  hooks.valid_batches = [&rc]() -> BatchFn {
    auto l = open_loader(rc, false, rc.train().eval_batches() * rc.train().micro_batch_size(), 0);
    if (!l.ok()) {
      absl::Status st = l.status();
      return [st]() -> absl::StatusOr<Batch> { return st; };
    }
    return batches_of(std::shared_ptr<data::Loader>(std::move(*l)));
  };
  hooks.save = [&](int64_t step, Model& m, AdamW& o) -> absl::Status {
    RunCounters c{step, step * samples_per_step * rc.model().seq_len(), loader->state().consumed_samples};
    CMOE_ASSIGN_OR_RETURN(std::string dir, save_train_state(ckpt_root, rc, m, o, c));
    std::printf("checkpoint: %s\n", dir.c_str());
    return absl::OkStatus();
  };
  std::signal(SIGTERM, on_sigterm);
  hooks.stop_requested = [] { return g_stop != 0; };

  auto summary = train_loop(*cfg, model, opt, counters.step, run_dir, hooks);
  if (!summary.ok()) return fail("train", summary.status());
  std::printf("done: %lld steps | final train loss %.4f | val loss %.4f | val ppl %.2f\n",
              static_cast<long long>(summary->steps_done), summary->final_train_loss, summary->final_eval.loss,
              summary->final_eval.ppl);
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
  auto ck = checkpoint_load(dir);
  if (!ck.ok()) return fail("eval", ck.status());
  Model model(cfg->model(), cfg->train().seed());
  auto c = load_train_state(*ck, *cfg, model, nullptr);
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
