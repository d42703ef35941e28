// cmd_generate.cpp — `cmoe generate`: text from a checkpoint, the command line of the decoding
// loop in moe/generate.h (the model comes from the checkpoint's own saved config).
//
//   cmoe generate --checkpoint DIR --tokenizer FILE (--prompt TEXT | --input FILE)
//                 [--max-new-tokens N] [--temperature T] [--top-k K] [--top-p P] [--seed S]
//                 [--disable-top1] [--json]
// stdout carries only the generated text (streamed token by token; with --input each prompt's
// text after a "--- prompt N ---" line) or, with --json, one JSON object per prompt; the seed,
// timings and tokens/s go to stderr. Every prompt is encoded and checked before the first token
// is generated, so a bad line costs nothing.
#include <cstdio>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "core/json.h"
#include "data/tokenizer.h"
#include "launch/command_line.h"
#include "launch/commands.h"
#include "moe/generate.h"
#include "moe/params.h"
#include "moe/train/train_state.h"

namespace cmoe {

namespace {

struct Prompt {
  int64_t index = 0;  // 1-based: the line of --input (1 for --prompt)
  std::string text;
  std::vector<int32_t> ids;
};

double per_s(double n, double s) { return s > 0 ? n / s : 0.0; }

// --input: one prompt per line ('\r\n' endings allowed).
absl::StatusOr<std::vector<std::string>> read_prompt_lines(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open --input ", path));
  std::vector<std::string> lines;
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    lines.push_back(line);
  }
  if (in.bad()) return absl::InternalError(absl::StrCat("cannot read --input ", path));
  if (lines.empty()) return absl::InvalidArgumentError(absl::StrCat("--input ", path, " holds no prompt (one per line)"));
  return lines;
}

int run_generate(const ParsedFlags& flags, const GenerateOptions& base, bool json_out) {
  const char* kName = "generate";
  auto tok = Tokenizer::load(flags.get("tokenizer"));
  if (!tok.ok()) return command_failed(kName, tok.status());
  std::vector<std::string> texts;
  if (flags.has("input")) {
    auto lines = read_prompt_lines(flags.get("input"));
    if (!lines.ok()) return command_failed(kName, lines.status());
    texts = std::move(*lines);
  } else {
    texts.push_back(flags.get("prompt"));
  }
  auto loaded = load_checkpoint_model(flags.get("checkpoint"));
  if (!loaded.ok()) return command_failed(kName, loaded.status());
  Model& model = *loaded->model;
  const auto& mc = model.config();
  if (base.forward.disable_top1) {
    if (absl::Status v = variant_check_disable_top1(model.variant()); !v.ok()) return command_failed(kName, v);
  }
  if (tok->vocab_size() > mc.vocab_size()) {
    return command_failed(kName, absl::InvalidArgumentError(absl::StrCat(
                                     "tokenizer ", flags.get("tokenizer"), " has ", tok->vocab_size(),
                                     " ids, more than the model's vocab_size ", mc.vocab_size(), " (", loaded->dir, ")")));
  }
  const std::optional<int32_t> eot = tok->eot_id();

  // Encode and check every prompt first.
  std::vector<Prompt> prompts;
  for (size_t i = 0; i < texts.size(); ++i) {
    Prompt p{static_cast<int64_t>(i + 1), texts[i], tok->encode(texts[i])};
    const std::string where = flags.has("input") ? absl::StrCat(flags.get("input"), " line ", p.index) : "--prompt";
    if (p.ids.empty()) {
      // An empty prompt is an unconditional sample: it starts from <|endoftext|>, as after a document.
      if (!eot) {
        return command_failed(kName, absl::InvalidArgumentError(absl::StrCat(
                                         where, " is empty and the tokenizer has no ", kEndOfText, " to start from")));
      }
      p.ids.push_back(*eot);
    }
    if (static_cast<int64_t>(p.ids.size()) > mc.seq_len()) {
      return command_failed(kName, absl::InvalidArgumentError(absl::StrCat(
                                       where, " is ", p.ids.size(), " tokens, longer than the model's context (model.seq_len = ",
                                       mc.seq_len(), "); shorten it")));
    }
    prompts.push_back(std::move(p));
  }

  const SamplingOptions& s = base.sampling;
  std::fprintf(stderr, "cmoe generate: %s (step %lld), %s, %.2fM parameters, context %lld; seed %llu (draws: "
               "Philox(seed, stream = prompt index)); temperature %g%s, top_k %lld, top_p %g; max_new_tokens %lld; "
               "stop at %s%s\n",
               loaded->dir.c_str(), static_cast<long long>(loaded->step), model.variant().name.c_str(),
               count_params(mc).total / 1e6, static_cast<long long>(mc.seq_len()), static_cast<unsigned long long>(s.seed),
               s.temperature, s.temperature == 0 ? " (greedy)" : "", static_cast<long long>(s.top_k), s.top_p,
               static_cast<long long>(base.max_new_tokens), eot ? kEndOfText : "max_new_tokens only (no end-of-text token)",
               base.forward.disable_top1 ? "; disable_top1" : "");

  int64_t sum_prompt = 0, sum_new = 0, sum_steps = 0;
  double sum_prefill = 0, sum_decode = 0;
  for (size_t i = 0; i < prompts.size(); ++i) {
    const Prompt& p = prompts[i];
    GenerateOptions opt = base;
    opt.stop_id = eot.value_or(-1);
    opt.vocab_limit = tok->vocab_size();
    opt.stream = generate_stream(p.index - 1);
    opt.forward.compute_dtype = compute_dtype(loaded->cfg.train());  // as training and eval compute
    absl::Status stream_error;
    std::function<void(int32_t)> on_token;
    if (!json_out) {
      if (flags.has("input")) std::printf("--- prompt %lld ---\n", static_cast<long long>(p.index));
      std::fflush(stdout);
      on_token = [&](int32_t id) {
        auto bytes = tok->decode_bytes({&id, 1});
        if (!bytes.ok()) {
          if (stream_error.ok()) stream_error = bytes.status();
          return;
        }
        std::fwrite(bytes->data(), 1, bytes->size(), stdout);
        std::fflush(stdout);
      };
    }
    auto r = generate(model, p.ids, opt, on_token);
    if (!r.ok()) return command_failed(kName, r.status());
    if (!stream_error.ok()) return command_failed(kName, stream_error);
    const double prefill_tps = per_s(static_cast<double>(r->prompt_tokens), r->prefill_s);
    const double decode_tps = per_s(static_cast<double>(r->decode_steps), r->decode_s);
    if (json_out) {
      auto text = tok->decode(r->tokens);
      if (!text.ok()) return command_failed(kName, text.status());
      json::Value j = json::Value::object();
      j.set("index", json::Value::integer(p.index));
      j.set("prompt", json::Value::string(p.text));
      j.set("completion", json::Value::string(*text));
      json::Value ids = json::Value::array();
      for (int32_t id : r->tokens) ids.push_back(json::Value::integer(id));
      j.set("tokens", std::move(ids));
      j.set("prompt_tokens", json::Value::integer(r->prompt_tokens));
      j.set("new_tokens", json::Value::integer(static_cast<int64_t>(r->tokens.size())));
      j.set("stop", json::Value::string(stop_reason_name(r->stop)));
      j.set("prefill_tokens_per_s", json::Value::formatted(prefill_tps, "%.2f"));
      j.set("decode_tokens_per_s", json::Value::formatted(decode_tps, "%.2f"));
      std::printf("%s\n", json::serialize_line(j).c_str());
    } else {
      std::printf("\n");
    }
    std::fflush(stdout);
    std::fprintf(stderr, "prompt %lld: %lld prompt tokens, prefill %.3f s (%.1f tokens/s); %zu new tokens, decode %.3f s "
                 "(%.1f tokens/s over %lld one-token steps); stop: %s\n",
                 static_cast<long long>(p.index), static_cast<long long>(r->prompt_tokens), r->prefill_s, prefill_tps,
                 r->tokens.size(), r->decode_s, decode_tps, static_cast<long long>(r->decode_steps),
                 stop_reason_name(r->stop));
    sum_prompt += r->prompt_tokens;
    sum_new += static_cast<int64_t>(r->tokens.size());
    sum_steps += r->decode_steps;
    sum_prefill += r->prefill_s;
    sum_decode += r->decode_s;
  }
  if (prompts.size() > 1) {
    std::fprintf(stderr, "total: %zu prompts, %lld prompt tokens (prefill %.1f tokens/s), %lld new tokens (decode %.1f "
                 "tokens/s)\n",
                 prompts.size(), static_cast<long long>(sum_prompt), per_s(static_cast<double>(sum_prompt), sum_prefill),
                 static_cast<long long>(sum_new), per_s(static_cast<double>(sum_steps), sum_decode));
  }
  return 0;
}

}  // namespace

int cmd_generate(int argc, char** argv) {
  CommandSpec spec{"generate", {}, {"checkpoint", "tokenizer"}};
  spec.flags = {
      {"checkpoint", true, false, "checkpoint directory (step_NNNNNNNN) or a run's checkpoints/ root; the model comes "
                                  "from its saved config"},
      {"tokenizer", true, false, "tokenizer.json the model was trained with"},
      {"prompt", true, false, "the prompt text"},
      {"input", true, false, "a file of prompts, one per line (instead of --prompt)"},
      {"max-new-tokens", true, false, "tokens to generate at most per prompt (default 64)"},
      {"temperature", true, false, "softmax temperature; 0 = greedy (default 1)"},
      {"top-k", true, false, "sample among the K most likely tokens; 0 = all (default 0)"},
      {"top-p", true, false, "sample among the most likely tokens holding probability P, in (0, 1] (default 1)"},
      {"seed", true, false, "seed of the Philox draws (default 1234)"},
      {"disable-top1", false, false, "exclude each token's top-1 expert in every router (robustness test)"},
      {"json", false, false, "one JSON object per prompt instead of streamed text"},
  };
  auto flags = parse_command_line(spec, argc, argv, 2);
  if (!flags) return kExitUsage;
  auto usage_error = [&spec](const std::string& msg) {
    std::fprintf(stderr, "cmoe generate: %s\n%s", msg.c_str(), flags_usage(spec.name, spec.flags).c_str());
    return kExitUsage;
  };
  if (flags->has("prompt") == flags->has("input")) return usage_error("give exactly one of --prompt TEXT and --input FILE");
  GenerateOptions opt;
  opt.sampling.seed = 1234;
  const std::string mnt = flags->get("max-new-tokens", "64"), temp = flags->get("temperature", "1"),
                    topk = flags->get("top-k", "0"), topp = flags->get("top-p", "1"), seed = flags->get("seed", "1234");
  if (!absl::SimpleAtoi(mnt, &opt.max_new_tokens) || opt.max_new_tokens < 1) {
    return usage_error(absl::StrCat("--max-new-tokens ", mnt, ": expected an integer >= 1"));
  }
  if (!absl::SimpleAtof(temp, &opt.sampling.temperature)) return usage_error(absl::StrCat("--temperature ", temp, ": expected a number"));
  if (!absl::SimpleAtoi(topk, &opt.sampling.top_k)) return usage_error(absl::StrCat("--top-k ", topk, ": expected an integer"));
  if (!absl::SimpleAtof(topp, &opt.sampling.top_p)) return usage_error(absl::StrCat("--top-p ", topp, ": expected a number"));
  if (!absl::SimpleAtoi(seed, &opt.sampling.seed)) {
    return usage_error(absl::StrCat("--seed ", seed, ": expected an integer in [0, 2^64)"));
  }
  if (absl::Status v = sampling_validate(opt.sampling); !v.ok()) {
    // Name the flag rather than the option field.
    std::string m(v.message());
    for (auto [field, flag] : {std::pair{"temperature", "--temperature"}, {"top_k", "--top-k"}, {"top_p", "--top-p"}})
      if (m.rfind(field, 0) == 0) m = flag + m.substr(std::string(field).size());
    return usage_error(m);
  }
  opt.forward.disable_top1 = flags->has("disable-top1");
  return run_generate(*flags, opt, flags->has("json"));
}

}  // namespace cmoe
