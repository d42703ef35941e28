// unicode.h — the Unicode facts the tokenizer needs beyond UTF-8 (core/utf8.h): the
// character classes of GPT-2's pre-tokenization regex (\p{L}, \p{N}, \s), GPT-2's byte-to-
// unicode map, and NFC normalization.
//
// Classes come from ICU (u_charType, u_isUWhiteSpace), i.e. the Unicode version of the
// installed ICU (Debian 12: ICU 72, Unicode 15.0). \s is Unicode White_Space, which is what
// Oniguruma (Hugging Face tokenizers) and Python's `regex` module use.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/utf8.h"

namespace cmoe::unicode {

// The classes of GPT-2's pre-tokenization regex. An undecodable byte is kOther.
enum class CharClass : uint8_t { kLetter, kNumber, kSpace, kOther };

namespace detail {
constexpr std::array<CharClass, 128> make_ascii_classes() {
  std::array<CharClass, 128> t{};
  for (int c = 0; c < 128; ++c) {
    CharClass k = CharClass::kOther;
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) k = CharClass::kLetter;
    if (c >= '0' && c <= '9') k = CharClass::kNumber;
    if ((c >= 0x09 && c <= 0x0D) || c == ' ') k = CharClass::kSpace;
    t[c] = k;
  }
  return t;
}
inline constexpr std::array<CharClass, 128> kAsciiClass = make_ascii_classes();
CharClass char_class_slow(char32_t cp);  // ICU lookup for cp >= 128 (and kInvalid)
}  // namespace detail

inline CharClass char_class(char32_t cp) {
  return cp < 128 ? detail::kAsciiClass[cp] : detail::char_class_slow(cp);
}

bool is_white_space(char32_t cp);  // Unicode White_Space (false for kInvalid)
bool is_word_char(char32_t cp);    // regex \w: letter, mark, number, connector punctuation

// GPT-2's byte-to-unicode map: bytes 33-126, 161-172, 174-255 map to themselves; the other 68
// map, in increasing byte order, to U+0100 + n (space -> U+0120, newline -> U+010A).
const std::array<char32_t, 256>& byte_to_unicode();
// The inverse: the byte a "byte character" stands for, or -1 when cp is not one.
int unicode_to_byte(char32_t cp);

// NFC normalization (ICU Normalizer2). Maximal well-formed runs are normalized; ill-formed
// bytes pass through unchanged, so normalization never loses input bytes. ASCII and text that is
// already NFC is returned without copying work beyond a check.
std::string nfc(std::string_view s);

}  // namespace cmoe::unicode
