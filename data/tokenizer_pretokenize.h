// tokenizer_pretokenize.h — GPT-2's pre-tokenization regex as a hand-written scanner.
//
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//
// Alternatives are tried in order at each position, as a backtracking regex engine does; the
// only backtracking case is \s+(?!\S): a whitespace run followed by a non-space gives its last
// character back, so " word" keeps its leading space. An ill-formed UTF-8 byte is a character of
// its own in the class [^\s\p{L}\p{N}]: reference tokenizers only accept valid text, and this
// choice keeps every byte string encodable without changing the split of any valid text.
// A header-only template so the callback inlines into the encoder's hot loop.
#pragma once

#include <cstddef>
#include <string_view>

#include "data/unicode.h"

namespace cmoe {

// Calls emit(std::string_view piece) for each pre-token of s, in order; the pieces tile s.
template <class Emit>
void pretokenize_gpt2(std::string_view s, Emit&& emit) {
  using unicode::CharClass;
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  auto class_at = [&](size_t i, int* len) {
    if (p[i] < 0x80) {
      *len = 1;
      return unicode::detail::kAsciiClass[p[i]];
    }
    char32_t cp;
    *len = unicode::decode_utf8(p, n, i, &cp);
    return unicode::detail::char_class_slow(cp);
  };
  // End of the run of characters of class k starting at i.
  auto run_end = [&](size_t i, CharClass k) {
    while (i < n) {
      int len;
      if (class_at(i, &len) != k) break;
      i += len;
    }
    return i;
  };
  size_t i = 0;
  while (i < n) {
    const size_t start = i;
    const unsigned char c = p[i];
    if (c == '\'' && i + 1 < n) {
      const unsigned char c1 = p[i + 1];
      if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd') {
        emit(s.substr(start, 2));
        i += 2;
        continue;
      }
      if (i + 2 < n) {
        const unsigned char c2 = p[i + 2];
        if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l')) {
          emit(s.substr(start, 3));
          i += 3;
          continue;
        }
      }
    }
    int len;
    CharClass k = class_at(i, &len);
    if (c == ' ' && i + 1 < n) {
      int len1;
      CharClass k1 = class_at(i + 1, &len1);
      if (k1 != CharClass::kSpace) {  // " ?\p{L}+", " ?\p{N}+" or " ?[^\s\p{L}\p{N}]+"
        i = run_end(i + 1 + len1, k1);
        emit(s.substr(start, i - start));
        continue;
      }
    }
    if (k != CharClass::kSpace) {
      i = run_end(i + len, k);
      emit(s.substr(start, i - start));
      continue;
    }
    // Whitespace run [start, j); last_len = length of its last character.
    size_t j = i;
    int last_len = len;
    while (j < n) {
      int l;
      if (class_at(j, &l) != CharClass::kSpace) break;
      last_len = l;
      j += l;
    }
    if (j < n && j - last_len > start) j -= last_len;  // \s+(?!\S) gives the last one back
    emit(s.substr(start, j - start));
    i = j;
  }
}

}  // namespace cmoe
