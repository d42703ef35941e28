// tokenizer.cpp — Tokenizer construction, encoding (added tokens, NFC, pre-tokenization, BPE
// by merge rank with a per-thread word cache) and decoding. tokenizer.json reading and writing
// live in tokenizer_json.cpp.
#include "data/tokenizer.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <cstring>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "core/check.h"
#include "data/tokenizer_pretokenize.h"
#include "data/unicode.h"

namespace cmoe {

namespace {

struct MergeInfo {
  int32_t rank;
  int32_t id;  // id of the merged token
};

inline uint64_t pair_key(int32_t a, int32_t b) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}

// Added tokens of one kind (raw or normalized), indexed by first byte; each bucket is sorted by
// length, longest first, so the first hit at the leftmost position is the leftmost-longest match.
struct AddedMatcher {
  struct Pattern {
    std::string text;
    int32_t token;  // index into spec.added_tokens
  };
  std::array<std::vector<Pattern>, 256> by_first;
  bool empty = true;

  void add(std::string text, int32_t token) {
    if (text.empty()) return;
    auto& bucket = by_first[static_cast<unsigned char>(text[0])];
    bucket.push_back(Pattern{std::move(text), token});
    std::stable_sort(bucket.begin(), bucket.end(),
                     [](const Pattern& a, const Pattern& b) { return a.text.size() > b.text.size(); });
    empty = false;
  }
};

// Previous code point ending at byte i (i > 0) of s; kInvalid for an ill-formed byte.
char32_t char_before(std::string_view s, size_t i) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  size_t start = i - 1;
  while (start > 0 && i - start < 4 && (p[start] & 0xC0) == 0x80) --start;
  char32_t cp;
  int len = unicode::decode_utf8(p, s.size(), start, &cp);
  return start + len == i ? cp : unicode::kInvalid;
}

char32_t char_at(std::string_view s, size_t i) {
  char32_t cp;
  unicode::decode_utf8(reinterpret_cast<const unsigned char*>(s.data()), s.size(), i, &cp);
  return cp;
}

std::atomic<uint64_t> g_next_serial{1};

// The per-thread cache of BPE results per pre-token word. `owner` is the serial of the
// tokenizer content it belongs to; a different tokenizer in the same thread resets it.
struct WordCache {
  uint64_t owner = 0;
  absl::flat_hash_map<std::string, std::pair<uint32_t, uint32_t>> map;  // word -> (offset, count) in pool
  std::vector<int32_t> pool;
};
constexpr size_t kCacheMaxWords = 1 << 18;
constexpr size_t kCacheMaxWordBytes = 64;

struct HeapEntry {
  int32_t rank;
  int32_t pos;
  int32_t left;
  int32_t right;
  // std::push_heap builds a max-heap: "less" means larger rank, then larger position.
  bool operator<(const HeapEntry& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
};

struct BpeScratch {
  std::vector<int32_t> id, prev, next;
  std::vector<HeapEntry> heap;
};

}  // namespace

struct Tokenizer::Impl {
  TokenizerSpec spec;
  uint64_t serial = 0;
  std::array<int32_t, 256> byte_id{};
  absl::flat_hash_map<uint64_t, MergeInfo> merges;
  absl::flat_hash_map<std::string, int32_t> vocab;          // model token -> id
  absl::flat_hash_map<std::string, int32_t> added_content;  // added token content -> id
  std::vector<std::string> id_token;                        // (vocab_size) token per id
  std::vector<std::string> id_bytes;                        // (vocab_size) decoded bytes per id
  std::vector<uint8_t> id_kind;                             // (vocab_size) see kHole...
  AddedMatcher raw_matcher, norm_matcher;

  static constexpr uint8_t kHole = 0, kModel = 1, kAdded = 2, kSpecial = 3;

  void bpe_word(std::string_view word, std::vector<int32_t>* out) const;
  void bpe_uncached(std::string_view word, std::vector<int32_t>* out) const;
  void encode_pretokenized(std::string_view piece, std::vector<int32_t>* out) const;
  void encode_raw_piece(std::string_view piece, std::vector<int32_t>* out) const;
  template <class F>
  void split_added(const AddedMatcher& m, std::string_view text, F&& on_piece) const;
};

absl::StatusOr<Tokenizer> Tokenizer::create(TokenizerSpec spec) {
  auto impl = std::make_unique<Impl>();
  Impl& t = *impl;
  int64_t max_id = -1;
  for (const auto& [tok, id] : spec.vocab) {
    if (id < 0) return absl::InvalidArgumentError(absl::StrCat("model.vocab: token \"", tok, "\" has negative id ", id));
    max_id = std::max<int64_t>(max_id, id);
  }
  for (size_t k = 0; k < spec.added_tokens.size(); ++k) {
    const AddedToken& a = spec.added_tokens[k];
    if (a.id < 0) return absl::InvalidArgumentError(absl::StrCat("added_tokens[", k, "].id is negative: ", a.id));
    if (a.content.empty()) return absl::InvalidArgumentError(absl::StrCat("added_tokens[", k, "].content is empty"));
    max_id = std::max<int64_t>(max_id, a.id);
  }
  if (max_id >= (int64_t{1} << 30)) {
    return absl::InvalidArgumentError(absl::StrCat("token id ", max_id, " is too large (ids must be below 2^30)"));
  }
  const size_t n = static_cast<size_t>(max_id + 1);
  t.id_token.assign(n, std::string());
  t.id_bytes.assign(n, std::string());
  t.id_kind.assign(n, Impl::kHole);
  t.vocab.reserve(spec.vocab.size());
  for (const auto& [tok, id] : spec.vocab) {
    if (t.id_kind[id] != Impl::kHole) {
      return absl::InvalidArgumentError(absl::StrCat("model.vocab: id ", id, " is used by both \"", t.id_token[id],
                                                     "\" and \"", tok, "\""));
    }
    if (!t.vocab.emplace(tok, id).second) {
      return absl::InvalidArgumentError(absl::StrCat("model.vocab: token \"", tok, "\" appears twice"));
    }
    t.id_kind[id] = Impl::kModel;
    t.id_token[id] = tok;
    // Hugging Face's ByteLevel decoder: a token made only of byte characters is those bytes;
    // any other token stands for its own UTF-8.
    std::string bytes;
    const auto* p = reinterpret_cast<const unsigned char*>(tok.data());
    bool all_bytes = true;
    for (size_t i = 0; i < tok.size();) {
      char32_t cp;
      int len = unicode::decode_utf8(p, tok.size(), i, &cp);
      int b = cp == unicode::kInvalid ? -1 : unicode::unicode_to_byte(cp);
      if (b < 0) {
        all_bytes = false;
        break;
      }
      bytes.push_back(static_cast<char>(b));
      i += len;
    }
    t.id_bytes[id] = all_bytes ? std::move(bytes) : tok;
  }
  const auto& b2u = unicode::byte_to_unicode();
  for (int b = 0; b < 256; ++b) {
    std::string ch;
    unicode::append_utf8(&ch, b2u[b]);
    auto it = t.vocab.find(ch);
    if (it == t.vocab.end()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "model.vocab lacks the byte-level character \"", ch, "\" for byte ", b,
          "; byte-level BPE needs all 256 (a tokenizer trained with the ByteLevel alphabet has them)"));
    }
    t.byte_id[b] = it->second;
  }
  t.merges.reserve(spec.merges.size());
  std::string joined;
  for (size_t r = 0; r < spec.merges.size(); ++r) {
    const auto& [a, b] = spec.merges[r];
    auto ia = t.vocab.find(a);
    auto ib = t.vocab.find(b);
    joined = a + b;
    auto ij = t.vocab.find(joined);
    if (ia == t.vocab.end() || ib == t.vocab.end() || ij == t.vocab.end()) {
      const std::string& missing = ia == t.vocab.end() ? a : ib == t.vocab.end() ? b : joined;
      return absl::InvalidArgumentError(
          absl::StrCat("model.merges[", r, "] (\"", a, "\", \"", b, "\"): token \"", missing, "\" is not in model.vocab"));
    }
    // A repeated merge takes its last rank, as GPT-2's dict(zip(merges, range)) and HF do.
    t.merges[pair_key(ia->second, ib->second)] = MergeInfo{static_cast<int32_t>(r), ij->second};
  }
  for (size_t k = 0; k < spec.added_tokens.size(); ++k) {
    const AddedToken& a = spec.added_tokens[k];
    uint8_t kind = t.id_kind[a.id];
    if (kind == Impl::kModel && t.id_token[a.id] != a.content) {
      return absl::InvalidArgumentError(absl::StrCat("added_tokens[", k, "]: id ", a.id, " is \"", t.id_token[a.id],
                                                     "\" in model.vocab but the added token's content is \"",
                                                     a.content, "\""));
    }
    if (kind == Impl::kAdded || kind == Impl::kSpecial) {
      return absl::InvalidArgumentError(absl::StrCat("added_tokens[", k, "]: id ", a.id, " is used twice"));
    }
    if (!t.added_content.emplace(a.content, a.id).second) {
      return absl::InvalidArgumentError(absl::StrCat("added_tokens[", k, "]: content \"", a.content, "\" appears twice"));
    }
    t.id_kind[a.id] = a.special ? Impl::kSpecial : Impl::kAdded;
    t.id_token[a.id] = a.content;
    t.id_bytes[a.id] = a.content;  // round-trips exactly (see docs/tokenizer.md)
    if (a.normalized) {
      t.norm_matcher.add(spec.normalizer == Normalizer::kNFC ? unicode::nfc(a.content) : a.content,
                         static_cast<int32_t>(k));
    } else {
      t.raw_matcher.add(a.content, static_cast<int32_t>(k));
    }
  }
  t.spec = std::move(spec);
  t.serial = g_next_serial.fetch_add(1);
  return Tokenizer(std::move(impl));
}

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::Tokenizer(const Tokenizer& o) : impl_(std::make_unique<Impl>(*o.impl_)) {}
Tokenizer& Tokenizer::operator=(const Tokenizer& o) {
  if (this != &o) impl_ = std::make_unique<Impl>(*o.impl_);
  return *this;
}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

const TokenizerSpec& Tokenizer::spec() const { return impl_->spec; }
int32_t Tokenizer::vocab_size() const { return static_cast<int32_t>(impl_->id_token.size()); }

std::optional<int32_t> Tokenizer::token_to_id(std::string_view token) const {
  auto a = impl_->added_content.find(absl::string_view(token.data(), token.size()));
  if (a != impl_->added_content.end()) return a->second;
  auto v = impl_->vocab.find(absl::string_view(token.data(), token.size()));
  if (v != impl_->vocab.end()) return v->second;
  return std::nullopt;
}

const std::string& Tokenizer::id_to_token(int32_t id) const {
  CMOE_CHECK(id >= 0 && id < vocab_size(), "id ", id, " outside [0, ", vocab_size(), ")");
  return impl_->id_token[id];
}

bool Tokenizer::is_special(int32_t id) const {
  return id >= 0 && id < vocab_size() && impl_->id_kind[id] == Impl::kSpecial;
}

// ---- encoding ---------------------------------------------------------------------------------

// BPE of one pre-token by merge rank: a min-heap of (rank, position) over adjacent symbol pairs,
// symbols in a linked list; a popped entry whose pair has since changed is skipped. Equal ranks
// merge left to right, which equals GPT-2's "merge every occurrence of the best pair" loop.
void Tokenizer::Impl::bpe_uncached(std::string_view word, std::vector<int32_t>* out) const {
  thread_local BpeScratch s;
  const int32_t n = static_cast<int32_t>(word.size());
  s.id.resize(n);
  s.prev.resize(n);
  s.next.resize(n);
  s.heap.clear();
  for (int32_t i = 0; i < n; ++i) {
    s.id[i] = byte_id[static_cast<unsigned char>(word[i])];
    s.prev[i] = i - 1;
    s.next[i] = i + 1 < n ? i + 1 : -1;
  }
  auto push_pair = [&](int32_t left) {
    int32_t right = s.next[left];
    if (right < 0) return;
    auto it = merges.find(pair_key(s.id[left], s.id[right]));
    if (it == merges.end()) return;
    s.heap.push_back(HeapEntry{it->second.rank, left, s.id[left], s.id[right]});
    std::push_heap(s.heap.begin(), s.heap.end());
  };
  for (int32_t i = 0; i + 1 < n; ++i) push_pair(i);
  while (!s.heap.empty()) {
    std::pop_heap(s.heap.begin(), s.heap.end());
    HeapEntry e = s.heap.back();
    s.heap.pop_back();
    int32_t left = e.pos;
    if (s.id[left] != e.left) continue;  // merged into something else (or removed: id -1)
    int32_t right = s.next[left];
    if (right < 0 || s.id[right] != e.right) continue;
    s.id[left] = merges.find(pair_key(e.left, e.right))->second.id;
    s.id[right] = -1;
    s.next[left] = s.next[right];
    if (s.next[right] >= 0) s.prev[s.next[right]] = left;
    if (s.prev[left] >= 0) push_pair(s.prev[left]);
    push_pair(left);
  }
  for (int32_t i = 0; i >= 0; i = s.next[i]) out->push_back(s.id[i]);
}

void Tokenizer::Impl::bpe_word(std::string_view word, std::vector<int32_t>* out) const {
  if (word.size() == 1) {
    out->push_back(byte_id[static_cast<unsigned char>(word[0])]);
    return;
  }
  if (word.size() > kCacheMaxWordBytes) {
    bpe_uncached(word, out);
    return;
  }
  thread_local WordCache cache;
  if (cache.owner != serial || cache.map.size() >= kCacheMaxWords) {
    cache.map.clear();
    cache.pool.clear();
    cache.owner = serial;
  }
  absl::string_view key(word.data(), word.size());
  auto it = cache.map.find(key);
  if (it != cache.map.end()) {
    const int32_t* ids = cache.pool.data() + it->second.first;
    out->insert(out->end(), ids, ids + it->second.second);
    return;
  }
  size_t before = out->size();
  bpe_uncached(word, out);
  uint32_t offset = static_cast<uint32_t>(cache.pool.size());
  cache.pool.insert(cache.pool.end(), out->begin() + static_cast<ptrdiff_t>(before), out->end());
  cache.map.emplace(std::string(word), std::make_pair(offset, static_cast<uint32_t>(out->size() - before)));
}

void Tokenizer::Impl::encode_pretokenized(std::string_view piece, std::vector<int32_t>* out) const {
  if (piece.empty()) return;
  std::string prefixed;
  if (spec.add_prefix_space && piece[0] != ' ') {
    prefixed.reserve(piece.size() + 1);
    prefixed.push_back(' ');
    prefixed.append(piece);
    piece = prefixed;
  }
  if (spec.use_regex) {
    pretokenize_gpt2(piece, [&](std::string_view w) { bpe_word(w, out); });
  } else {
    bpe_word(piece, out);
  }
}

// Cuts added tokens out of `text`: calls on_piece(piece, -1) for ordinary text and
// on_piece(text, id) for an added token, in order. Hugging Face's AddedVocabulary::find_matches.
template <class F>
void Tokenizer::Impl::split_added(const AddedMatcher& m, std::string_view text, F&& on_piece) const {
  if (m.empty) {
    on_piece(text, -1);
    return;
  }
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  size_t piece_start = 0;
  size_t i = 0;
  while (i < n) {
    const auto& bucket = m.by_first[p[i]];
    const AddedMatcher::Pattern* hit = nullptr;
    for (const auto& pat : bucket) {
      if (pat.text.size() <= n - i && std::memcmp(p + i, pat.text.data(), pat.text.size()) == 0) {
        hit = &pat;
        break;
      }
    }
    if (!hit) {
      ++i;
      continue;
    }
    size_t start = i, stop = i + hit->text.size();
    const AddedToken& tok = spec.added_tokens[hit->token];
    if (tok.single_word) {
      bool left_ok = start == 0 || !unicode::is_word_char(char_before(text, start));
      bool right_ok = stop == n || !unicode::is_word_char(char_at(text, stop));
      if (!left_ok || !right_ok) {
        i = stop;  // the match is consumed without splitting, as Aho-Corasick iteration does
        continue;
      }
    }
    if (tok.lstrip) {
      while (start > piece_start) {
        size_t prev = start - 1;
        while (prev > piece_start && start - prev < 4 && (p[prev] & 0xC0) == 0x80) --prev;
        char32_t cp;
        int len = unicode::decode_utf8(p, n, prev, &cp);
        if (prev + static_cast<size_t>(len) != start || !unicode::is_white_space(cp)) break;
        start = prev;
      }
    }
    if (tok.rstrip) {
      while (stop < n) {
        char32_t cp;
        int len = unicode::decode_utf8(p, n, stop, &cp);
        if (!unicode::is_white_space(cp)) break;
        stop += len;
      }
    }
    if (start > piece_start) on_piece(text.substr(piece_start, start - piece_start), -1);
    on_piece(text.substr(start, stop - start), tok.id);
    piece_start = i = stop;
  }
  if (piece_start < n) on_piece(text.substr(piece_start), -1);
}

void Tokenizer::Impl::encode_raw_piece(std::string_view piece, std::vector<int32_t>* out) const {
  auto after_norm = [&](std::string_view part, int32_t id) {
    if (id >= 0) {
      out->push_back(id);
    } else {
      encode_pretokenized(part, out);
    }
  };
  if (spec.normalizer == Normalizer::kNFC) {
    std::string normalized = unicode::nfc(piece);
    split_added(norm_matcher, normalized, after_norm);
  } else {
    split_added(norm_matcher, piece, after_norm);
  }
}

void Tokenizer::encode(std::string_view text, std::vector<int32_t>* ids) const {
  const Impl& t = *impl_;
  t.split_added(t.raw_matcher, text, [&](std::string_view piece, int32_t id) {
    if (id >= 0) {
      ids->push_back(id);
    } else {
      t.encode_raw_piece(piece, ids);
    }
  });
}

std::vector<int32_t> Tokenizer::encode(std::string_view text) const {
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 4);
  encode(text, &ids);
  return ids;
}

// ---- decoding ---------------------------------------------------------------------------------

absl::StatusOr<std::string> Tokenizer::decode_bytes(std::span<const int32_t> ids) const {
  const Impl& t = *impl_;
  std::string out;
  out.reserve(ids.size() * 4);
  for (size_t k = 0; k < ids.size(); ++k) {
    int32_t id = ids[k];
    if (id < 0 || id >= vocab_size() || t.id_kind[id] == Impl::kHole) {
      return absl::InvalidArgumentError(absl::StrCat("token id ", id, " at position ", k,
                                                     " is not in the vocabulary (size ", vocab_size(), ")"));
    }
    out.append(t.id_bytes[id]);
  }
  return out;
}

absl::StatusOr<std::string> Tokenizer::decode(std::span<const int32_t> ids) const {
  CMOE_ASSIGN_OR_RETURN(std::string bytes, decode_bytes(ids));
  if (unicode::is_valid_utf8(bytes)) return bytes;
  return unicode::sanitize_utf8(bytes);
}

}  // namespace cmoe
