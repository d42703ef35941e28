// unicode.h — the Unicode facts the tokenizer and the JSON parser need: UTF-8 decoding that
// never fails (an invalid byte decodes as itself, so byte-level BPE round-trips any input), the
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

namespace cmoe::unicode {

inline constexpr char32_t kInvalid = 0xFFFFFFFF;  // an undecodable byte
inline constexpr char32_t kReplacement = 0xFFFD;

// Decodes the code point starting at s[i] (i < n) into *cp and returns its length in bytes.
// Ill-formed input (stray continuation byte, truncated sequence, overlong form, surrogate,
// > U+10FFFF) yields *cp = kInvalid and length 1: each bad byte stands alone.
inline int decode_utf8(const unsigned char* s, size_t n, size_t i, char32_t* cp) {
  unsigned c = s[i];
  if (c < 0x80) {
    *cp = c;
    return 1;
  }
  int len;
  char32_t v, min;
  if (c >= 0xC2 && c <= 0xDF) {
    len = 2, v = c & 0x1F, min = 0x80;
  } else if (c >= 0xE0 && c <= 0xEF) {
    len = 3, v = c & 0x0F, min = 0x800;
  } else if (c >= 0xF0 && c <= 0xF4) {
    len = 4, v = c & 0x07, min = 0x10000;
  } else {
    *cp = kInvalid;
    return 1;
  }
  if (i + len > n) {
    *cp = kInvalid;
    return 1;
  }
  for (int k = 1; k < len; ++k) {
    unsigned cc = s[i + k];
    if ((cc & 0xC0) != 0x80) {
      *cp = kInvalid;
      return 1;
    }
    v = (v << 6) | (cc & 0x3F);
  }
  if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) {
    *cp = kInvalid;
    return 1;
  }
  *cp = v;
  return len;
}

// Appends the UTF-8 encoding of a valid scalar value (CMOE_CHECKed).
void append_utf8(std::string* out, char32_t cp);

bool is_valid_utf8(std::string_view s);
// Byte offset of the first ill-formed byte, or s.size() when valid.
size_t first_invalid_utf8(std::string_view s);
// Replaces each ill-formed byte with U+FFFD (for printing decoded text).
std::string sanitize_utf8(std::string_view s);

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
