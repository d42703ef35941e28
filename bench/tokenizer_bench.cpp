// tokenizer_bench.cpp — byte-level BPE throughput: training time and encode MB/s, per core.
//
//   tokenizer_bench --text FILE [--vocab-size 8192] [--repeat 3]
// Trains on FILE with 1 and 2 threads (and checks both give the same tokenizer), then encodes
// FILE line by line — one document per line, as preprocessing does — on 1 thread with a cold
// word cache, on 1 thread warm, and on all threads (OpenMP over lines). MB/s counts input bytes.
// bench/tokenizer_vs_spm.sh runs this next to SentencePiece on the same text.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "data/tokenizer.h"
#include "data/tokenizer_train.h"

namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace

int main(int argc, char** argv) {
  std::string path;
  int vocab = 8192, repeat = 3;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--text")) path = argv[i + 1];
    if (!std::strcmp(argv[i], "--vocab-size")) vocab = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--repeat")) repeat = std::atoi(argv[i + 1]);
  }
  if (path.empty()) {
    std::fprintf(stderr, "usage: tokenizer_bench --text FILE [--vocab-size N] [--repeat R]\n");
    return 2;
  }
  std::ifstream in(path, std::ios::binary);
  std::stringstream buf;
  buf << in.rdbuf();
  const std::string text = buf.str();
  if (text.empty()) {
    std::fprintf(stderr, "tokenizer_bench: cannot read %s\n", path.c_str());
    return 1;
  }
  const double mb = text.size() / 1e6;
  std::vector<std::string_view> lines;
  for (size_t pos = 0; pos < text.size();) {
    size_t end = text.find('\n', pos);
    end = end == std::string::npos ? text.size() : end + 1;
    lines.emplace_back(text.data() + pos, end - pos);
    pos = end;
  }
  std::printf("text: %s, %.2f MB, %zu lines; vocab %d; %d threads available\n", path.c_str(), mb, lines.size(), vocab,
              omp_get_max_threads());

  std::string first_json;
  cmoe::TokenizerTrainOptions opts;
  opts.vocab_size = vocab;
  std::optional<cmoe::Tokenizer> tok;
  for (int threads : {1, 2}) {
    opts.num_threads = threads;
    cmoe::TokenizerTrainStats st;
    double t0 = now_s();
    auto t = cmoe::tokenizer_train({text}, opts, &st);
    double dt = now_s() - t0;
    if (!t.ok()) {
      std::fprintf(stderr, "train failed: %s\n", std::string(t.status().message()).c_str());
      return 1;
    }
    std::printf("train  threads=%d: %.2f s (count %.2f s, merges %.2f s; %lld unique words, %d merges)\n", threads,
                dt, st.count_seconds, st.merge_seconds, static_cast<long long>(st.unique_words), st.merges);
    std::string json = t->to_json();
    if (first_json.empty()) {
      first_json = json;
    } else if (json != first_json) {
      std::fprintf(stderr, "train: 1 and 2 threads gave different tokenizers\n");
      return 1;
    }
    tok.emplace(*std::move(t));
  }

  // Cold: a fresh copy of the tokenizer has a new serial, so its thread-local word cache starts empty.
  int64_t n_tokens = 0;  // tokens of one pass
  double best_cold = 1e30, best_warm = 1e30, best_par = 1e30;
  for (int r = 0; r < repeat; ++r) {
    cmoe::Tokenizer fresh = cmoe::Tokenizer::from_json(first_json).value();
    std::vector<int32_t> ids;
    n_tokens = 0;
    double t0 = now_s();
    for (std::string_view l : lines) {
      ids.clear();
      fresh.encode(l, &ids);
      n_tokens += static_cast<int64_t>(ids.size());
    }
    best_cold = std::min(best_cold, now_s() - t0);
    t0 = now_s();
    for (std::string_view l : lines) {
      ids.clear();
      fresh.encode(l, &ids);
    }
    best_warm = std::min(best_warm, now_s() - t0);
    t0 = now_s();
    int64_t par_tokens = 0;
#pragma omp parallel reduction(+ : par_tokens)
    {
      std::vector<int32_t> local;
#pragma omp for schedule(dynamic, 256)
      for (int64_t k = 0; k < static_cast<int64_t>(lines.size()); ++k) {
        local.clear();
        fresh.encode(lines[k], &local);
        par_tokens += static_cast<int64_t>(local.size());
      }
    }
    best_par = std::min(best_par, now_s() - t0);
    if (par_tokens != n_tokens) {
      std::fprintf(stderr, "parallel encode gave a different token count\n");
      return 1;
    }
  }
  std::printf("encode 1 thread cold cache: %.1f MB/s (%.3f s)\n", mb / best_cold, best_cold);
  std::printf("encode 1 thread warm cache: %.1f MB/s (%.3f s)\n", mb / best_warm, best_warm);
  std::printf("encode %d threads:          %.1f MB/s (%.3f s), %.1f MB/s per core\n", omp_get_max_threads(),
              mb / best_par, best_par, mb / best_par / omp_get_max_threads());
  std::printf("tokens: %lld (%.2f bytes/token)\n", static_cast<long long>(n_tokens), text.size() / double(n_tokens));
  return 0;
}
