// utf8.h — UTF-8 decoding that never fails (an invalid byte decodes as itself, so byte-level
// tokenizers round-trip any input), encoding, and validity checks. Shared by the JSON module
// (core/json.h) and the tokenizer's Unicode layer (data/unicode.h).
#pragma once

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

}  // namespace cmoe::unicode
