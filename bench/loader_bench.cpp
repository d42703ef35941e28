// loader_bench.cpp — the data loader's cost per cpu-small training step (issue goal: < 1%).
//
// cpu-small trains micro-batches of 8 x 256 tokens (vocabulary 8192). This harness measures, on
// a generated Megatron dataset of a few million uint16 tokens (or --prefix, e.g. the mini-Pile):
//   (a) producer: the time to build one micro-batch exactly as Loader's prefetch thread does
//       (GptDataset sample assembly from the mmap across document boundaries, the vocabulary
//       check, the (B, T) tokens/targets tensors), over --repeats distinct micro-batches;
//   (b) consumer: the time Loader::next() blocks with prefetch on while the consumer simulates
//       each training step by keeping --busy-threads cores spinning for --sim-step-s (default
//       2, as a real step's two OpenMP threads do, so the prefetch thread has to share a core;
//       the first call, which waits for the first batch, is reported apart from the steady state);
// plus the one-time Loader::open cost (index building). Each is reported as a fraction of a
// cpu-small step time, --step-s (default 0.75 s, the project's working figure for a cpu-small
// step on two idle cores; bench/run_train_bench.sh measures it as 2048 tokens / tok/s — pass
// your machine's number; a slower step only shrinks the fractions).
// The last line is one JSON object with every number.
//
// usage: loader_bench [--step-s 0.75] [--sim-step-s 0.75] [--steps 6] [--repeats 300]
//                     [--busy-threads 2] [--micro-batch 8] [--seq-len 256] [--prefetch 4] [--tokens 3000000]
//                     [--dir /tmp/cmoe-loader-bench] [--prefix EXISTING_PREFIX --vocab V]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "core/rng.h"
#include "core/tensor.h"
#include "data/indexed_dataset.h"
#include "data/loader.h"

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

void die(const std::string& what) {
  std::fprintf(stderr, "loader_bench: %s\n", what.c_str());
  std::exit(1);
}

// A Pile-like dataset: documents of 100..4999 tokens (mean ~2.5k, like the mini-Pile's), ids
// spread over [0, vocab-1) with the last id as end-of-document, until `tokens` are written.
std::string generate(const std::string& dir, int64_t vocab, int64_t tokens) {
  std::filesystem::create_directories(dir);
  const std::string prefix = dir + "/bench_" + std::to_string(vocab) + "_" + std::to_string(tokens);
  if (std::filesystem::exists(prefix + ".idx")) return prefix;
  auto w = cmoe::data::IndexedDatasetWriter::create(prefix, cmoe::data::token_dtype_for_vocab(vocab));
  if (!w.ok()) die(std::string(w.status().message()));
  uint64_t draw = 0;
  std::vector<int32_t> doc;
  while (w->num_tokens() < tokens) {
    doc.resize(100 + cmoe::rng_u32(42, 1, draw++) % 4900);
    for (auto& t : doc) t = static_cast<int32_t>(cmoe::rng_u32(42, 2, draw++) % (vocab - 1));
    doc.back() = static_cast<int32_t>(vocab - 1);
    if (auto st = w->add_document(doc); !st.ok()) die(std::string(st.message()));
  }
  if (auto st = w->finish(); !st.ok()) die(std::string(st.message()));
  return prefix;
}

struct Stats {
  double mean = 0, p50 = 0, max = 0;
};
Stats stats(std::vector<double> v) {
  Stats s;
  if (v.empty()) return s;
  for (double x : v) s.mean += x;
  s.mean /= static_cast<double>(v.size());
  std::sort(v.begin(), v.end());
  s.p50 = v[v.size() / 2];
  s.max = v.back();
  return s;
}

void spin_for(double s) {
  const auto t0 = Clock::now();
  volatile uint64_t x = 0;
  while (seconds_since(t0) < s) x = x + 1;
}

// The consumer's simulated training step: `threads` cores busy for `s` seconds.
void simulated_step(double s, int threads) {
  std::vector<std::thread> helpers;
  for (int i = 1; i < threads; ++i) helpers.emplace_back(spin_for, s);
  spin_for(s);
  for (auto& h : helpers) h.join();
}

}  // namespace

int main(int argc, char** argv) {
  double step_s = 0.75, sim_step_s = -1;
  int64_t steps = 6, repeats = 300, B = 8, T = 256, tokens = 3'000'000, vocab = 8192;
  int prefetch = 4, busy_threads = 2;
  std::string dir = "/tmp/cmoe-loader-bench", prefix;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 >= argc) die("flag " + a + " needs a value (see the header of bench/loader_bench.cpp)");
    const char* v = argv[++i];
    if (a == "--step-s") step_s = std::atof(v);
    else if (a == "--sim-step-s") sim_step_s = std::atof(v);
    else if (a == "--steps") steps = std::atoll(v);
    else if (a == "--repeats") repeats = std::atoll(v);
    else if (a == "--micro-batch") B = std::atoll(v);
    else if (a == "--seq-len") T = std::atoll(v);
    else if (a == "--prefetch") prefetch = std::atoi(v);
    else if (a == "--busy-threads") busy_threads = std::atoi(v);
    else if (a == "--tokens") tokens = std::atoll(v);
    else if (a == "--vocab") vocab = std::atoll(v);
    else if (a == "--dir") dir = v;
    else if (a == "--prefix") prefix = v;
    else die("unknown flag " + a);
  }
  if (sim_step_s < 0) sim_step_s = step_s;
  if (step_s <= 0 || steps < 2 || repeats < 1 || B < 1 || T < 2 || prefetch < 1 || busy_threads < 1) die("bad flag values");
  if (prefix.empty()) prefix = generate(dir, vocab, tokens);

  cmoe::data::LoaderConfig cfg;
  cfg.sources = {{prefix, 1.0}};
  cfg.split = "1,0,0";
  cfg.seq_length = T;
  cfg.micro_batch = B;
  cfg.num_samples = (repeats + steps) * B;
  cfg.prefetch = prefetch;
  cfg.vocab_size = vocab;

  // One-time: the indices (document, sample, shuffle) for the run's samples.
  auto t0 = Clock::now();
  auto blended = cmoe::data::BlendedSamples::build(cfg);
  if (!blended.ok()) die(std::string(blended.status().message()));
  const double build_s = seconds_since(t0);
  const int64_t dataset_tokens = blended->dataset(0).tokens_per_epoch();

  // (a) Producer: Loader::make_batch's work for `repeats` distinct micro-batches.
  std::vector<double> produce;
  std::vector<int32_t> s(static_cast<size_t>(T + 1));  // (T+1)
  int64_t checksum = 0;
  for (int64_t r = 0; r < repeats; ++r) {
    t0 = Clock::now();
    cmoe::Tensor tokens_t = cmoe::Tensor::empty({B, T}, cmoe::DType::kI32);
    cmoe::Tensor targets_t = cmoe::Tensor::empty({B, T}, cmoe::DType::kI32);
    int32_t* tok = tokens_t.data<int32_t>();   // (B, T)
    int32_t* tgt = targets_t.data<int32_t>();  // (B, T)
    for (int64_t b = 0; b < B; ++b) {
      if (auto st = blended->sample(r * B + b, s); !st.ok()) die(std::string(st.message()));
      std::copy(s.begin(), s.end() - 1, tok + b * T);
      std::copy(s.begin() + 1, s.end(), tgt + b * T);
    }
    produce.push_back(seconds_since(t0));
    checksum += tok[0] + tgt[B * T - 1];
  }
  const Stats ps = stats(produce);

  // (b) Consumer: Loader::next() with prefetch on, between simulated training steps.
  t0 = Clock::now();
  auto loader = cmoe::data::Loader::open(cfg);
  if (!loader.ok()) die(std::string(loader.status().message()));
  const double open_s = seconds_since(t0);
  std::vector<double> waits;
  for (int64_t i = 0; i < steps; ++i) {
    t0 = Clock::now();
    auto mb = (*loader)->next();
    waits.push_back(seconds_since(t0));
    if (!mb.ok()) die(std::string(mb.status().message()));
    checksum += mb->tokens.data<int32_t>()[0];
    simulated_step(sim_step_s, busy_threads);
  }
  const double first_wait = waits.front();
  const Stats ws = stats(std::vector<double>(waits.begin() + 1, waits.end()));

  std::printf("dataset: %s (%lld tokens), micro-batch %lld x %lld, vocab %lld, prefetch %d\n", prefix.c_str(),
              static_cast<long long>(dataset_tokens), static_cast<long long>(B), static_cast<long long>(T),
              static_cast<long long>(vocab), prefetch);
  std::printf("cpu-small step time: %.3f s (--step-s); simulated step: %d busy threads for %.3f s x %lld steps\n",
              step_s, busy_threads, sim_step_s, static_cast<long long>(steps));
  std::printf("(a) producer, one micro-batch: mean %.1f us, p50 %.1f us, max %.1f us over %lld = %.5f%% of a step\n",
              ps.mean * 1e6, ps.p50 * 1e6, ps.max * 1e6, static_cast<long long>(repeats), 100 * ps.mean / step_s);
  std::printf("(b) consumer wait in next(), steady state: mean %.1f us, max %.1f us = %.5f%% of a step\n",
              ws.mean * 1e6, ws.max * 1e6, 100 * ws.mean / step_s);
  std::printf("    first next() (waits for the first batch): %.1f us; Loader::open %.2f ms; index build %.2f ms "
              "(once per run = %.3f%% of one step)\n",
              first_wait * 1e6, open_s * 1e3, build_s * 1e3, 100 * build_s / step_s);
  std::printf("{\"bench\": \"loader\", \"tokens\": %lld, \"micro_batch\": %lld, \"seq_len\": %lld, \"step_s\": %.4f, "
              "\"produce_mean_us\": %.2f, \"produce_p50_us\": %.2f, \"produce_max_us\": %.2f, "
              "\"produce_fraction\": %.3e, \"wait_mean_us\": %.2f, \"wait_max_us\": %.2f, \"wait_fraction\": %.3e, "
              "\"first_wait_us\": %.2f, \"open_ms\": %.3f, \"build_ms\": %.3f, \"checksum\": %lld}\n",
              static_cast<long long>(dataset_tokens), static_cast<long long>(B), static_cast<long long>(T), step_s,
              ps.mean * 1e6, ps.p50 * 1e6, ps.max * 1e6, ps.mean / step_s, ws.mean * 1e6, ws.max * 1e6,
              ws.mean / step_s, first_wait * 1e6, open_s * 1e3, build_s * 1e3, static_cast<long long>(checksum));
  return 0;
}
