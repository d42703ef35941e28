// cmd_train.cpp — `cmoe train` and `cmoe eval`, the command lines of the training library's
// train_run and eval_checkpoint (moe/train/trainer.h).
//
//   cmoe train --config F --run-dir D [--set k=v]... [--resume CKPT_DIR]
//   cmoe eval  --config F --checkpoint CKPT_DIR [--set k=v]... [--disable-top1] [--disable-top1-set SET] [--json]
// A run directory holds config.textproto (the resolved config), metrics.jsonl and
// checkpoints/ (step_NNNNNNNN/ directories and a `latest` pointer). `train` on a run directory
// that has checkpoints resumes from latest, and says so.
#include <cmath>
#include <cstdio>

#include "core/json.h"
#include "launch/command_line.h"
#include "launch/commands.h"
#include "moe/train/trainer.h"

namespace cmoe {

int cmd_train(int argc, char** argv) {
  CommandSpec spec{"train", config_flags(), {"config", "run-dir"}};
  spec.flags.push_back({"run-dir", true, false, "run directory: config, metrics.jsonl, checkpoints/"});
  spec.flags.push_back(
      {"resume", true, false, "resume from this checkpoint directory instead of <run-dir>/checkpoints/latest"});
  auto flags = parse_command_line(spec, argc, argv, 2);
  if (!flags) return kExitUsage;
  auto cfg = config_load(flags->get("config"), flags->all("set"));
  if (!cfg.ok()) return command_failed("train", cfg.status());
  if (absl::Status st = train_run(*cfg, flags->get("run-dir"), flags->get("resume")); !st.ok()) {
    return command_failed("train", st);
  }
  return 0;
}

int cmd_eval(int argc, char** argv) {
  CommandSpec spec{"eval", config_flags(), {"config", "checkpoint"}};
  spec.flags.push_back({"checkpoint", true, false, "checkpoint directory (step_NNNNNNNN) or a run's checkpoints/ root"});
  spec.flags.push_back({"disable-top1", false, false, "exclude each token's top-1 expert in every router (robustness test)"});
  spec.flags.push_back({"disable-top1-set", true, false,
                        "with --disable-top1 implied: only in the routers of this expert set (moe, moeA, moeB)"});
  spec.flags.push_back({"json", false, false, "print JSON"});
  auto flags = parse_command_line(spec, argc, argv, 2);
  if (!flags) return kExitUsage;
  auto cfg = config_load(flags->get("config"), flags->all("set"));
  if (!cfg.ok()) return command_failed("eval", cfg.status());
  const std::string only = flags->has("disable-top1-set") ? flags->get("disable-top1-set") : "";
  const bool disable_top1 = flags->has("disable-top1") || !only.empty();
  auto ev = eval_checkpoint(*cfg, flags->get("checkpoint"), disable_top1, only);
  if (!ev.ok()) return command_failed("eval", ev.status());
  if (flags->has("json")) {
    json::Value j = json::Value::object();
    j.set("checkpoint", json::Value::string(ev->dir));
    j.set("step", json::Value::integer(ev->step));
    j.set("val_loss", json::Value::formatted(ev->result.loss, "%.6f"));
    j.set("val_ppl", json::Value::formatted(ev->result.ppl, "%.4f"));
    j.set("tokens", json::Value::integer(ev->result.tokens));
    j.set("disable_top1", json::Value::boolean(disable_top1));
    if (!only.empty()) j.set("disable_top1_set", json::Value::string(only));
    json::Value routers = json::Value::object();
    for (const RouterReport& r : ev->result.routers) {
      json::Value o = json::Value::object();
      if (r.prob_tokens > 0) {
        o.set("top1_prob", json::Value::formatted(r.top1_prob_sum / r.prob_tokens, "%.6f"));
        o.set("entropy", json::Value::formatted(r.entropy_sum / r.prob_tokens, "%.6f"));
      }
      if (r.tokens > 0) o.set("routed_gate", json::Value::formatted(r.routed_gate_sum / r.tokens, "%.6f"));
      routers.set(r.name, std::move(o));
    }
    j.set("routers", std::move(routers));
    std::printf("%s\n", json::serialize_line(j).c_str());
  } else {
    std::printf("checkpoint %s (step %lld)%s: val loss %.4f | val ppl %.2f | %lld tokens\n", ev->dir.c_str(),
                static_cast<long long>(ev->step), disable_top1 ? (only.empty() ? " [disable_top1]" : (" [disable_top1 in " + only + "]").c_str()) : "", ev->result.loss, ev->result.ppl,
                static_cast<long long>(ev->result.tokens));
    for (const RouterReport& r : ev->result.routers) {
      if (r.tokens == 0) continue;
      std::printf("  router %s:", r.name.c_str());
      if (r.prob_tokens > 0) {
        std::printf(" top-1 probability %.3f | entropy %.3f nats (uniform %.3f) |", r.top1_prob_sum / r.prob_tokens,
                    r.entropy_sum / r.prob_tokens, std::log(static_cast<double>(r.counts.size())));
      }
      std::printf(" routed gate %.3f\n", r.routed_gate_sum / r.tokens);
    }
  }
  return 0;
}

}  // namespace cmoe
