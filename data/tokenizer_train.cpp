// tokenizer_train.cpp — parallel word counting and the incremental BPE merge loop.
#include "data/tokenizer_train.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <fstream>
#include <functional>
#include <sstream>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "core/check.h"
#include "data/tokenizer_pretokenize.h"
#include "data/unicode.h"

namespace cmoe {

namespace {

using WordCounts = absl::flat_hash_map<std::string, int64_t>;

constexpr size_t kChunkBytes = size_t{1} << 20;

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

bool ascii_space(unsigned char c) { return c == ' ' || (c >= 0x09 && c <= 0x0D); }

// Chunk ends: a cut at j (s[j-2] ASCII non-space, s[j-1] == '\n', s[j] ASCII non-space) splits
// no pre-token: "\n" there is a one-character whitespace run followed by a non-space, which the
// regex always emits alone, and nothing before it can extend across it.
std::vector<size_t> chunk_ends(std::string_view s) {
  std::vector<size_t> ends;
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  size_t pos = 0;
  while (pos < s.size()) {
    size_t j = std::min(s.size(), pos + kChunkBytes);
    while (j < s.size()) {
      bool safe = j >= 2 && p[j - 1] == '\n' && p[j - 2] < 0x80 && !ascii_space(p[j - 2]) && p[j] < 0x80 &&
                  !ascii_space(p[j]);
      if (safe) break;
      ++j;
    }
    ends.push_back(j);
    pos = j;
  }
  return ends;
}

// Cuts special tokens out of `text` (leftmost-longest), calling on_piece for the text between.
template <class F>
void split_specials(std::string_view text, const std::vector<std::string>& specials, F&& on_piece) {
  size_t piece = 0, i = 0;
  while (i < text.size()) {
    const std::string* hit = nullptr;
    for (const std::string& sp : specials) {
      if (!sp.empty() && text[i] == sp[0] && text.size() - i >= sp.size() &&
          std::memcmp(text.data() + i, sp.data(), sp.size()) == 0 && (!hit || sp.size() > hit->size())) {
        hit = &sp;
      }
    }
    if (!hit) {
      ++i;
      continue;
    }
    if (i > piece) on_piece(text.substr(piece, i - piece));
    i += hit->size();
    piece = i;
  }
  if (piece < text.size()) on_piece(text.substr(piece));
}

void count_words(std::string_view text, const std::vector<std::string>& specials, WordCounts* counts,
                 int64_t* n_words) {
  split_specials(text, specials, [&](std::string_view piece) {
    pretokenize_gpt2(piece, [&](std::string_view w) {
      ++*n_words;
      auto it = counts->find(absl::string_view(w.data(), w.size()));
      if (it != counts->end()) {
        ++it->second;
      } else {
        counts->emplace(std::string(w), 1);
      }
    });
  });
}

inline uint64_t pair_key(int32_t a, int32_t b) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}
inline int32_t pair_left(uint64_t k) { return static_cast<int32_t>(k >> 32); }
inline int32_t pair_right(uint64_t k) { return static_cast<int32_t>(k & 0xFFFFFFFFu); }

struct Candidate {
  int64_t count;
  uint64_t pair;
};

// The pair-count bookkeeping of one merge over a block of words.
struct MergeDelta {
  absl::flat_hash_map<uint64_t, int64_t> delta;
  std::vector<std::pair<uint64_t, int32_t>> new_sites;  // (new pair, word) in word order
};

class Trainer {
 public:
  Trainer(std::vector<std::string> words, std::vector<int64_t> counts, int threads)
      : counts_(std::move(counts)), threads_(threads) {
    tokens_.reserve(1 << 14);
    for (int b = 0; b < 256; ++b) {
      tokens_.emplace_back(1, static_cast<char>(b));
      token_id_.emplace(tokens_.back(), b);
    }
    words_.resize(words.size());
    for (size_t w = 0; w < words.size(); ++w) {
      words_[w].reserve(words[w].size());
      for (unsigned char c : words[w]) words_[w].push_back(c);
    }
  }

  // Learns merges until `max_tokens` distinct tokens exist (bytes included).
  void run(size_t max_tokens, int64_t min_pair_count) {
    count_initial_pairs();
    while (tokens_.size() < max_tokens && !heap_.empty()) {
      std::pop_heap(heap_.begin(), heap_.end(), heap_less_);
      Candidate top = heap_.back();
      heap_.pop_back();
      auto pc = pair_counts_.find(top.pair);
      int64_t actual = pc == pair_counts_.end() ? 0 : pc->second;
      if (actual != top.count) {  // stale entry: re-queue with the current count
        if (actual > 0) push(Candidate{actual, top.pair});
        continue;
      }
      if (actual < min_pair_count) break;
      merge(top.pair);
    }
  }

  const std::vector<std::string>& tokens() const { return tokens_; }
  const std::vector<std::pair<int32_t, int32_t>>& merges() const { return merges_; }

 private:
  bool less_by_strings(uint64_t a, uint64_t b) const {
    const std::string& al = tokens_[pair_left(a)];
    const std::string& bl = tokens_[pair_left(b)];
    if (al != bl) return al < bl;
    return tokens_[pair_right(a)] < tokens_[pair_right(b)];
  }

  void push(Candidate c) {
    heap_.push_back(c);
    std::push_heap(heap_.begin(), heap_.end(), heap_less_);
  }

  void count_initial_pairs() {
    const int64_t n = static_cast<int64_t>(words_.size());
    const int T = std::max(1, threads_);
    std::vector<absl::flat_hash_map<uint64_t, int64_t>> local_counts(T);
    std::vector<absl::flat_hash_map<uint64_t, std::vector<int32_t>>> local_where(T);
#pragma omp parallel for num_threads(T) schedule(static, 1)
    for (int t = 0; t < T; ++t) {
      const int64_t lo = n * t / T, hi = n * (t + 1) / T;
      for (int64_t w = lo; w < hi; ++w) {
        const auto& sym = words_[w];
        for (size_t i = 0; i + 1 < sym.size(); ++i) {
          uint64_t k = pair_key(sym[i], sym[i + 1]);
          local_counts[t][k] += counts_[w];
          auto& list = local_where[t][k];
          if (list.empty() || list.back() != w) list.push_back(static_cast<int32_t>(w));
        }
      }
    }
    for (int t = 0; t < T; ++t) {  // thread order = word order, so lists stay sorted
      for (const auto& [k, c] : local_counts[t]) pair_counts_[k] += c;
      for (auto& [k, list] : local_where[t]) {
        auto& dst = where_[k];
        dst.insert(dst.end(), list.begin(), list.end());
      }
    }
    std::vector<uint64_t> keys;
    keys.reserve(pair_counts_.size());
    for (const auto& [k, c] : pair_counts_) keys.push_back(k);
    std::sort(keys.begin(), keys.end());  // heap contents independent of hash order
    for (uint64_t k : keys) heap_.push_back(Candidate{pair_counts_[k], k});
    std::make_heap(heap_.begin(), heap_.end(), heap_less_);
  }

  // Merges (a, b) -> c in one word, left to right, recording pair-count changes around each
  // merge site. In-place rewriting makes overlapping sites ("a a a") come out right: the left
  // neighbour of a site is whatever the previous site produced.
  void merge_word(int32_t w, int32_t a, int32_t b, int32_t c, MergeDelta* d) {
    auto& sym = words_[w];
    const int64_t cnt = counts_[w];
    size_t out = 0;
    const size_t n = sym.size();
    for (size_t i = 0; i < n;) {
      if (i + 1 < n && sym[i] == a && sym[i + 1] == b) {
        if (out > 0) {
          int32_t prev = sym[out - 1];
          d->delta[pair_key(prev, a)] -= cnt;
          d->delta[pair_key(prev, c)] += cnt;
          d->new_sites.emplace_back(pair_key(prev, c), w);
        }
        if (i + 2 < n) {
          int32_t next = sym[i + 2];
          d->delta[pair_key(b, next)] -= cnt;
          d->delta[pair_key(c, next)] += cnt;
          d->new_sites.emplace_back(pair_key(c, next), w);
        }
        sym[out++] = c;
        i += 2;
      } else {
        sym[out++] = sym[i++];
      }
    }
    sym.resize(out);
  }

  void merge(uint64_t pair) {
    const int32_t a = pair_left(pair), b = pair_right(pair);
    std::string joined = tokens_[a] + tokens_[b];
    int32_t c;
    auto existing = token_id_.find(joined);
    if (existing != token_id_.end()) {
      c = existing->second;  // the same string reached by another split: reuse its id
    } else {
      c = static_cast<int32_t>(tokens_.size());
      tokens_.push_back(joined);
      token_id_.emplace(std::move(joined), c);
    }
    merges_.emplace_back(a, b);

    std::vector<int32_t> sites = std::move(where_[pair]);
    where_.erase(pair);
    std::sort(sites.begin(), sites.end());  // lists gather words from several merges
    sites.erase(std::unique(sites.begin(), sites.end()), sites.end());
    pair_counts_.erase(pair);
    const int64_t n = static_cast<int64_t>(sites.size());
    const int T = n >= 4096 ? std::max(1, threads_) : 1;
    std::vector<MergeDelta> deltas(T);
#pragma omp parallel for num_threads(T) schedule(static, 1) if (T > 1)
    for (int t = 0; t < T; ++t) {
      const int64_t lo = n * t / T, hi = n * (t + 1) / T;
      for (int64_t s = lo; s < hi; ++s) merge_word(sites[s], a, b, c, &deltas[t]);
    }
    std::vector<uint64_t> touched_new;
    for (int t = 0; t < T; ++t) {
      for (const auto& [k, dv] : deltas[t].delta) {
        if (k == pair) continue;  // the merged pair is gone entirely
        int64_t& v = pair_counts_[k];
        v += dv;
        CMOE_CHECK(v >= 0, "negative pair count");
        if (v == 0) pair_counts_.erase(k);
      }
      for (const auto& [k, w] : deltas[t].new_sites) {
        auto& list = where_[k];
        if (list.empty() || list.back() != w) list.push_back(w);
        touched_new.push_back(k);
      }
    }
    std::sort(touched_new.begin(), touched_new.end());
    touched_new.erase(std::unique(touched_new.begin(), touched_new.end()), touched_new.end());
    for (uint64_t k : touched_new) {
      auto it = pair_counts_.find(k);
      if (it != pair_counts_.end() && it->second > 0) push(Candidate{it->second, k});
    }
  }

  std::vector<std::vector<int32_t>> words_;  // (unique words) symbols of each word
  std::vector<int64_t> counts_;              // (unique words) occurrences
  std::vector<std::string> tokens_;          // raw bytes of each token id
  absl::flat_hash_map<std::string, int32_t> token_id_;
  std::vector<std::pair<int32_t, int32_t>> merges_;
  absl::flat_hash_map<uint64_t, int64_t> pair_counts_;
  absl::flat_hash_map<uint64_t, std::vector<int32_t>> where_;  // pair -> words that may hold it
  std::vector<Candidate> heap_;
  int threads_;
  // Max-heap order: higher count first, then lexicographically smaller (left, right) strings.
  std::function<bool(const Candidate&, const Candidate&)> heap_less_ = [this](const Candidate& x, const Candidate& y) {
    if (x.count != y.count) return x.count < y.count;
    return less_by_strings(y.pair, x.pair);
  };
};

std::string byte_level(std::string_view bytes) {
  std::string out;
  const auto& b2u = unicode::byte_to_unicode();
  for (unsigned char c : bytes) unicode::append_utf8(&out, b2u[c]);
  return out;
}

}  // namespace

absl::StatusOr<Tokenizer> tokenizer_train(const std::vector<std::string_view>& texts,
                                          const TokenizerTrainOptions& options, TokenizerTrainStats* stats) {
  const int32_t n_special = static_cast<int32_t>(options.special_tokens.size());
  if (options.vocab_size < n_special + 256) {
    return absl::InvalidArgumentError(absl::StrCat("vocab size ", options.vocab_size, " is below the minimum ",
                                                   n_special + 256, " (", n_special, " special tokens + 256 bytes)"));
  }
  for (const std::string& sp : options.special_tokens) {
    if (sp.empty()) return absl::InvalidArgumentError("special tokens must not be empty");
  }
  const int threads = options.num_threads > 0 ? options.num_threads : omp_get_max_threads();
  TokenizerTrainStats st;
  auto t0 = std::chrono::steady_clock::now();

  // 1. Word counts over chunks; chunk results are merged in chunk order.
  std::vector<std::string_view> chunks;
  for (std::string_view text : texts) {
    st.bytes += static_cast<int64_t>(text.size());
    size_t pos = 0;
    for (size_t end : chunk_ends(text)) {
      chunks.push_back(text.substr(pos, end - pos));
      pos = end;
    }
  }
  std::vector<WordCounts> local(threads);
  std::vector<int64_t> local_words(threads, 0);
#pragma omp parallel num_threads(threads)
  {
    const int t = omp_get_thread_num();
#pragma omp for schedule(dynamic, 1)
    for (int64_t c = 0; c < static_cast<int64_t>(chunks.size()); ++c) {
      count_words(chunks[c], options.special_tokens, &local[t], &local_words[t]);
    }
  }
  WordCounts all = std::move(local[0]);
  st.words = local_words[0];
  for (int t = 1; t < threads; ++t) {
    st.words += local_words[t];
    for (auto& [w, c] : local[t]) all[w] += c;
    WordCounts().swap(local[t]);
  }
  std::vector<std::pair<std::string, int64_t>> sorted(all.begin(), all.end());
  WordCounts().swap(all);
  std::sort(sorted.begin(), sorted.end());
  st.unique_words = static_cast<int64_t>(sorted.size());
  std::vector<std::string> words;
  std::vector<int64_t> counts;
  words.reserve(sorted.size());
  counts.reserve(sorted.size());
  for (auto& [w, c] : sorted) {
    words.push_back(std::move(w));
    counts.push_back(c);
  }
  sorted.clear();
  st.count_seconds = seconds_since(t0);

  // 2. Merges.
  auto t1 = std::chrono::steady_clock::now();
  Trainer trainer(std::move(words), std::move(counts), threads);
  trainer.run(static_cast<size_t>(options.vocab_size - n_special), options.min_pair_count);
  st.merge_seconds = seconds_since(t1);
  st.merges = static_cast<int32_t>(trainer.merges().size());

  // Internal ids (bytes 0-255, then merged tokens) -> final ids.
  const auto& tokens = trainer.tokens();
  const auto& b2u = unicode::byte_to_unicode();
  std::vector<int> byte_order(256);
  for (int b = 0; b < 256; ++b) byte_order[b] = b;
  std::sort(byte_order.begin(), byte_order.end(), [&](int x, int y) { return b2u[x] < b2u[y]; });
  TokenizerSpec spec;
  for (int32_t k = 0; k < n_special; ++k) {
    spec.vocab.emplace_back(options.special_tokens[k], k);
    AddedToken a;
    a.id = k;
    a.content = options.special_tokens[k];
    a.special = true;
    a.normalized = false;
    spec.added_tokens.push_back(a);
  }
  for (int k = 0; k < 256; ++k) spec.vocab.emplace_back(byte_level(tokens[byte_order[k]]), n_special + k);
  for (size_t id = 256; id < tokens.size(); ++id) {
    spec.vocab.emplace_back(byte_level(tokens[id]), n_special + static_cast<int32_t>(id));
  }
  for (const auto& [a, b] : trainer.merges()) spec.merges.emplace_back(byte_level(tokens[a]), byte_level(tokens[b]));
  spec.post_processor_byte_level = true;
  if (stats) *stats = st;
  return Tokenizer::create(std::move(spec));
}

absl::StatusOr<Tokenizer> tokenizer_train_files(const std::vector<std::string>& paths,
                                                const TokenizerTrainOptions& options, TokenizerTrainStats* stats) {
  if (paths.empty()) return absl::InvalidArgumentError("no input files to train on");
  std::vector<std::string> texts;
  for (const std::string& path : paths) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return absl::NotFoundError(absl::StrCat("cannot open training input ", path));
    std::stringstream buf;
    buf << in.rdbuf();
    if (in.bad()) return absl::DataLossError(absl::StrCat("error reading ", path));
    texts.push_back(std::move(buf).str());
  }
  std::vector<std::string_view> views(texts.begin(), texts.end());
  return tokenizer_train(views, options, stats);
}

}  // namespace cmoe
