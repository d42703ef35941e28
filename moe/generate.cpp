// generate.cpp — next-token choice and the decoding loop over a key/value cache (see generate.h).
#include "moe/generate.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "core/rng.h"

namespace cmoe {

absl::Status sampling_validate(const SamplingOptions& s) {
  if (!std::isfinite(s.temperature) || s.temperature < 0) {
    return absl::InvalidArgumentError(absl::StrCat("temperature ", s.temperature, " must be a finite number >= 0"));
  }
  if (s.top_k < 0) return absl::InvalidArgumentError(absl::StrCat("top_k ", s.top_k, " must be >= 0 (0 = off)"));
  if (!(s.top_p > 0 && s.top_p <= 1)) {
    return absl::InvalidArgumentError(absl::StrCat("top_p ", s.top_p, " must lie in (0, 1] (1 = off)"));
  }
  return absl::OkStatus();
}

int32_t sample_token(std::span<const float> logits, const SamplingOptions& s, float u, int64_t vocab_limit) {
  const int64_t V = vocab_limit > 0 ? std::min<int64_t>(vocab_limit, static_cast<int64_t>(logits.size()))
                                    : static_cast<int64_t>(logits.size());
  CMOE_CHECK(V > 0, "sample_token: no candidate ids");
  const float* z = logits.data();
  if (s.temperature == 0) return static_cast<int32_t>(std::max_element(z, z + V) - z);  // first maximum

  // Ids by logit, descending, lower id first on ties; only the first k need ordering.
  std::vector<int32_t> ids(static_cast<size_t>(V));
  std::iota(ids.begin(), ids.end(), 0);
  const int64_t k = s.top_k > 0 ? std::min(s.top_k, V) : V;
  std::partial_sort(ids.begin(), ids.begin() + k, ids.end(),
                    [z](int32_t a, int32_t b) { return z[a] > z[b] || (z[a] == z[b] && a < b); });
  const double zmax = z[ids[0]], inv_t = 1.0 / s.temperature;
  std::vector<double> p(static_cast<size_t>(k));
  double total = 0;
  for (int64_t i = 0; i < k; ++i) total += p[i] = std::exp((z[ids[i]] - zmax) * inv_t);
  int64_t n = k;
  if (s.top_p < 1) {
    // The shortest prefix whose share of the probability reaches top_p.
    double cum = 0;
    for (n = 0; n < k;) {
      cum += p[n++];
      if (cum >= s.top_p * total) break;
    }
    total = cum;
  }
  const double target = static_cast<double>(u) * total;
  double cum = 0;
  for (int64_t i = 0; i < n; ++i) {
    cum += p[i];
    if (cum > target) return ids[i];
  }
  return ids[n - 1];  // rounding at the top end
}

uint64_t generate_stream(int64_t index) { return rng_stream_id(absl::StrCat("generate.prompt.", index)); }

const char* stop_reason_name(StopReason r) {
  switch (r) {
    case StopReason::kStopToken: return "stop_token";
    case StopReason::kMaxNewTokens: return "max_new_tokens";
    case StopReason::kContextFull: return "context_full";
  }
  return "?";
}

absl::StatusOr<GenerateResult> generate(Model& model, std::span<const int32_t> prompt, const GenerateOptions& opt,
                                        const std::function<void(int32_t)>& on_token) {
  const auto& m = model.config();
  const int64_t P = static_cast<int64_t>(prompt.size());
  if (P < 1 || P > m.seq_len()) {
    return absl::InvalidArgumentError(
        absl::StrCat("a prompt of ", P, " tokens: it needs 1 to model.seq_len = ", m.seq_len(), " tokens"));
  }
  for (int64_t i = 0; i < P; ++i) {
    if (prompt[i] < 0 || prompt[i] >= m.vocab_size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("prompt token ", i, " is id ", prompt[i], ", outside the model's vocabulary [0, ", m.vocab_size(), ")"));
    }
  }
  if (opt.max_new_tokens < 1) return absl::InvalidArgumentError("max_new_tokens must be >= 1");
  CMOE_RETURN_IF_ERROR(sampling_validate(opt.sampling));

  using Clock = std::chrono::steady_clock;
  auto seconds = [](Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); };
  GenerateResult r;
  r.prompt_tokens = P;
  // Positions needed: the prompt and every new token but the last (which is never fed back).
  KvCache cache = model.kv_cache(1, std::min<int64_t>(m.seq_len(), P + opt.max_new_tokens - 1));
  auto t0 = Clock::now();
  Tensor logits = model.forward_cached(Tensor::from_ints({1, P}, prompt), cache, opt.forward);
  r.prefill_s = seconds(t0);
  for (int64_t n = 0;; ++n) {
    t0 = Clock::now();
    const float u = rng_uniform(opt.sampling.seed, opt.stream, static_cast<uint64_t>(n));
    const int32_t tok = sample_token({logits.data<float>(), static_cast<size_t>(logits.numel())}, opt.sampling, u,
                                     opt.vocab_limit);
    r.decode_s += seconds(t0);
    if (tok == opt.stop_id) {
      r.stop = StopReason::kStopToken;
      break;
    }
    r.tokens.push_back(tok);
    if (on_token) on_token(tok);
    if (static_cast<int64_t>(r.tokens.size()) == opt.max_new_tokens) {
      r.stop = StopReason::kMaxNewTokens;
      break;
    }
    if (cache.length == m.seq_len()) {
      r.stop = StopReason::kContextFull;
      break;
    }
    t0 = Clock::now();
    logits = model.forward_cached(Tensor::from_ints({1, 1}, std::vector<int32_t>{tok}), cache, opt.forward);
    r.decode_s += seconds(t0);
    ++r.decode_steps;
  }
  return r;
}

}  // namespace cmoe
