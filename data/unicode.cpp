// unicode.cpp — regex character classes via ICU, GPT-2's byte map, NFC.
#include "data/unicode.h"

#include <unicode/bytestream.h>
#include <unicode/normalizer2.h>
#include <unicode/stringpiece.h>
#include <unicode/uchar.h>

#include "core/check.h"

namespace cmoe::unicode {

namespace detail {

CharClass char_class_slow(char32_t cp) {
  if (cp == kInvalid) return CharClass::kOther;
  if (u_isUWhiteSpace(static_cast<UChar32>(cp))) return CharClass::kSpace;
  switch (u_charType(static_cast<UChar32>(cp))) {
    case U_UPPERCASE_LETTER:
    case U_LOWERCASE_LETTER:
    case U_TITLECASE_LETTER:
    case U_MODIFIER_LETTER:
    case U_OTHER_LETTER:
      return CharClass::kLetter;
    case U_DECIMAL_DIGIT_NUMBER:
    case U_LETTER_NUMBER:
    case U_OTHER_NUMBER:
      return CharClass::kNumber;
    default:
      return CharClass::kOther;
  }
}

}  // namespace detail


bool is_white_space(char32_t cp) {
  return cp != kInvalid && u_isUWhiteSpace(static_cast<UChar32>(cp));
}

bool is_word_char(char32_t cp) {
  if (cp == kInvalid) return false;
  if (cp < 128) return (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z') || (cp >= '0' && cp <= '9') || cp == '_';
  switch (u_charType(static_cast<UChar32>(cp))) {
    case U_UPPERCASE_LETTER:
    case U_LOWERCASE_LETTER:
    case U_TITLECASE_LETTER:
    case U_MODIFIER_LETTER:
    case U_OTHER_LETTER:
    case U_NON_SPACING_MARK:
    case U_ENCLOSING_MARK:
    case U_COMBINING_SPACING_MARK:
    case U_DECIMAL_DIGIT_NUMBER:
    case U_LETTER_NUMBER:
    case U_OTHER_NUMBER:
    case U_CONNECTOR_PUNCTUATION:
      return true;
    default:
      return false;
  }
}

namespace {
struct ByteMaps {
  std::array<char32_t, 256> to_unicode{};
  std::array<int16_t, 324> to_byte{};  // code points < 0x144 cover every byte character
  ByteMaps() {
    to_byte.fill(-1);
    int n = 0;
    for (int b = 0; b < 256; ++b) {
      bool same = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
      to_unicode[b] = same ? static_cast<char32_t>(b) : static_cast<char32_t>(256 + n++);
      to_byte[to_unicode[b]] = static_cast<int16_t>(b);
    }
  }
};
const ByteMaps& byte_maps() {
  static const ByteMaps maps;
  return maps;
}
}  // namespace

const std::array<char32_t, 256>& byte_to_unicode() { return byte_maps().to_unicode; }

int unicode_to_byte(char32_t cp) {
  const ByteMaps& m = byte_maps();
  return cp < m.to_byte.size() ? m.to_byte[cp] : -1;
}

namespace {
const icu::Normalizer2& nfc_instance() {
  static const icu::Normalizer2* inst = [] {
    UErrorCode err = U_ZERO_ERROR;
    const icu::Normalizer2* p = icu::Normalizer2::getNFCInstance(err);
    CMOE_CHECK(U_SUCCESS(err) && p != nullptr, "ICU NFC normalizer unavailable: ", u_errorName(err));
    return p;
  }();
  return *inst;
}

// Normalizes a well-formed run, appending to *out.
void nfc_run(std::string_view run, std::string* out) {
  const icu::Normalizer2& n = nfc_instance();
  UErrorCode err = U_ZERO_ERROR;
  icu::StringPiece sp(run.data(), static_cast<int32_t>(run.size()));
  if (n.isNormalizedUTF8(sp, err) && U_SUCCESS(err)) {
    out->append(run);
    return;
  }
  err = U_ZERO_ERROR;
  icu::StringByteSink<std::string> sink(out);
  n.normalizeUTF8(0, sp, sink, nullptr, err);
  CMOE_CHECK(U_SUCCESS(err), "ICU NFC normalization failed: ", u_errorName(err));
}
}  // namespace

std::string nfc(std::string_view s) {
  size_t i = 0, n = s.size();
  while (i < n && static_cast<unsigned char>(s[i]) < 0x80) ++i;
  if (i == n) return std::string(s);  // ASCII is always NFC
  std::string out;
  out.reserve(s.size() + s.size() / 8);
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  size_t run_start = 0;
  i = 0;
  while (i < n) {
    char32_t cp;
    int len = decode_utf8(p, n, i, &cp);
    if (cp == kInvalid) {
      if (i > run_start) nfc_run(s.substr(run_start, i - run_start), &out);
      out.push_back(s[i]);
      run_start = i + 1;
    }
    i += len;
  }
  if (n > run_start) nfc_run(s.substr(run_start), &out);
  return out;
}

}  // namespace cmoe::unicode
