// generate.h — text generation with a model: choosing the next token from its logits (greedy,
// temperature, top-k, top-p, seeded draws) and the decoding loop over a key/value cache (one
// prefill of the prompt, then one forward pass of one token per new token), streaming each
// token to a callback as soon as it is chosen. What `cmoe generate` runs per prompt.
//
// The next token from the logits z of the next position (ids >= vocab_limit never chosen):
//   temperature 0:  argmax_i z_i (the lowest id on ties); top-k and top-p do not apply.
//   temperature T:  order the ids by z descending (lower id first on ties); keep the first
//                   top_k (0 = all); p_i = exp((z_i - z_max) / T) / sum over the kept;
//                   top-p: keep the shortest prefix of that order whose probability sum reaches
//                   top_p (at least one id) and renormalise over it; then the id at which the
//                   running sum of p first exceeds u * sum, u = Philox(seed, stream, n) in (0, 1)
//                   for the n-th new token of the sequence (n = 0, 1, ...).
// A sequence's draws are a function of (seed, stream, n) alone, so a prompt's continuation does
// not depend on the other prompts generated beside it.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "moe/model.h"

namespace cmoe {

struct SamplingOptions {
  float temperature = 1.0f;  // 0 = greedy
  int64_t top_k = 0;         // 0 = no top-k cut
  float top_p = 1.0f;        // 1 = no nucleus cut; in (0, 1]
  uint64_t seed = 0;         // Philox key of the draws
};

// temperature finite and >= 0, top_k >= 0, top_p in (0, 1]; InvalidArgument naming the field.
absl::Status sampling_validate(const SamplingOptions& s);

// The next token from one position's logits (the rule above); u in (0, 1) is the draw
// (unused at temperature 0). vocab_limit: ids >= it are never chosen (0 = no limit).
int32_t sample_token(std::span<const float> logits, const SamplingOptions& s, float u, int64_t vocab_limit = 0);

// The Philox stream of the draws of prompt number `index` (0-based) of a generation run.
uint64_t generate_stream(int64_t index);

struct GenerateOptions {
  int64_t max_new_tokens = 64;  // >= 1
  SamplingOptions sampling;
  int32_t stop_id = -1;         // drawing this id ends the sequence (it is not emitted); -1 = none
  int64_t vocab_limit = 0;      // see sample_token
  uint64_t stream = 0;          // generate_stream(prompt index)
  ForwardOptions forward;       // compute dtype; disable_top1 (the robustness test's routing)
};

enum class StopReason { kStopToken, kMaxNewTokens, kContextFull };
// "stop_token", "max_new_tokens", "context_full".
const char* stop_reason_name(StopReason r);

struct GenerateResult {
  std::vector<int32_t> tokens;  // the new tokens (without the stop token)
  StopReason stop = StopReason::kMaxNewTokens;
  int64_t prompt_tokens = 0;
  double prefill_s = 0;         // the prompt's forward pass
  int64_t decode_steps = 0;     // one-token forward passes after the prefill
  double decode_s = 0;          // those passes and every token's choice
};

// Continues `prompt` (1 <= size <= model.seq_len, ids in the model's vocabulary) on one
// process with a whole model: prefill, then one token at a time until the stop id is drawn,
// max_new_tokens are out, or the context is full (the last new token sits at position
// model.seq_len, so a prompt of P tokens gets at most seq_len - P + 1). on_token (may be empty)
// receives each new token as soon as it is chosen.
absl::StatusOr<GenerateResult> generate(Model& model, std::span<const int32_t> prompt, const GenerateOptions& opt,
                                        const std::function<void(int32_t)>& on_token = {});

}  // namespace cmoe
