// jsonl_reader.cpp — see jsonl_reader.h. A strict recursive-descent scanner over one line that
// decodes the strings it keeps and validates (then skips) everything else.
#include "data/jsonl_reader.h"

#include "absl/strings/str_cat.h"
#include "core/check.h"

namespace cmoe::data {

namespace {

constexpr int kMaxDepth = 64;


class Scanner {
 public:
  Scanner(std::string_view s, const std::string& file, int64_t line) : s_(s), file_(file), line_(line) {}

  absl::Status error(const std::string& expected) const {
    std::string found = p_ < s_.size() ? absl::StrCat("'", std::string(1, s_[p_]), "'") : "the end of the line";
    return absl::InvalidArgumentError(
        absl::StrCat(file_, ":", line_, ": at column ", p_ + 1, ": found ", found, ", expected ", expected));
  }
  void ws() {
    while (p_ < s_.size() && (s_[p_] == ' ' || s_[p_] == '\t' || s_[p_] == '\r' || s_[p_] == '\n')) ++p_;
  }
  bool eat(char c) {
    ws();
    if (p_ < s_.size() && s_[p_] == c) {
      ++p_;
      return true;
    }
    return false;
  }
  bool at_end() {
    ws();
    return p_ == s_.size();
  }

  // Parses a JSON string at p_ into *out (UTF-8), or validates it when out is null.
  absl::Status string(std::string* out) {
    ws();
    if (p_ >= s_.size() || s_[p_] != '"') return error("a string");
    ++p_;
    for (;;) {
      if (p_ >= s_.size()) return error("the closing '\"' of a string");
      const unsigned char c = static_cast<unsigned char>(s_[p_]);
      if (c == '"') {
        ++p_;
        return absl::OkStatus();
      }
      if (c < 0x20) return error("an escaped control character (raw control characters are not allowed in strings)");
      if (c != '\\') {
        if (out) out->push_back(static_cast<char>(c));
        ++p_;
        continue;
      }
      ++p_;
      if (p_ >= s_.size()) return error("an escape character");
      const char e = s_[p_++];
      char simple = 0;
      switch (e) {
        case '"': simple = '"'; break;
        case '\\': simple = '\\'; break;
        case '/': simple = '/'; break;
        case 'b': simple = '\b'; break;
        case 'f': simple = '\f'; break;
        case 'n': simple = '\n'; break;
        case 'r': simple = '\r'; break;
        case 't': simple = '\t'; break;
        case 'u': break;
        default: --p_; return error("one of \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX");
      }
      if (simple) {
        if (out) out->push_back(simple);
        continue;
      }
      uint32_t cp;
      CMOE_RETURN_IF_ERROR(hex4(&cp));
      if (cp >= 0xD800 && cp <= 0xDBFF) {
        // A high surrogate pairs with a following \uDC00-\uDFFF; alone it becomes U+FFFD, as
        // Python's json module would keep it unencodable.
        uint32_t lo = 0;
        if (p_ + 1 < s_.size() && s_[p_] == '\\' && s_[p_ + 1] == 'u') {
          const size_t save = p_;
          p_ += 2;
          CMOE_RETURN_IF_ERROR(hex4(&lo));
          if (lo >= 0xDC00 && lo <= 0xDFFF) {
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          } else {
            p_ = save;
            cp = 0xFFFD;
          }
        } else {
          cp = 0xFFFD;
        }
      } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
        cp = 0xFFFD;
      }
      if (out) append_utf8(cp, out);
    }
  }

  // Validates and skips any JSON value.
  absl::Status skip_value(int depth) {
    if (depth > kMaxDepth) return error(absl::StrCat("at most ", kMaxDepth, " levels of nesting"));
    ws();
    if (p_ >= s_.size()) return error("a value");
    const char c = s_[p_];
    if (c == '"') return string(nullptr);
    if (c == '{') return object(depth, [&](const std::string&) { return skip_value(depth + 1); });
    if (c == '[') {
      ++p_;
      if (eat(']')) return absl::OkStatus();
      for (;;) {
        CMOE_RETURN_IF_ERROR(skip_value(depth + 1));
        if (eat(']')) return absl::OkStatus();
        if (!eat(',')) return error("',' or ']' in an array");
      }
    }
    for (const char* lit : {"true", "false", "null"}) {
      const std::string_view l(lit);
      if (s_.substr(p_, l.size()) == l) {
        p_ += l.size();
        return absl::OkStatus();
      }
    }
    return number();
  }

  // Parses an object, calling member(key) with p_ at each value; member must consume it.
  template <typename F>
  absl::Status object(int depth, F&& member) {
    if (depth > kMaxDepth) return error(absl::StrCat("at most ", kMaxDepth, " levels of nesting"));
    if (!eat('{')) return error("'{'");
    if (eat('}')) return absl::OkStatus();
    for (;;) {
      std::string key;
      CMOE_RETURN_IF_ERROR(string(&key));
      if (!eat(':')) return error("':' after an object key");
      CMOE_RETURN_IF_ERROR(member(key));
      if (eat('}')) return absl::OkStatus();
      if (!eat(',')) return error("',' or '}' in an object");
    }
  }

  bool peek_string() {
    ws();
    return p_ < s_.size() && s_[p_] == '"';
  }
  bool peek_object() {
    ws();
    return p_ < s_.size() && s_[p_] == '{';
  }

 private:
  absl::Status hex4(uint32_t* cp) {
    *cp = 0;
    for (int i = 0; i < 4; ++i, ++p_) {
      if (p_ >= s_.size()) return error("4 hex digits after \\u");
      const char h = s_[p_];
      int v = h >= '0' && h <= '9' ? h - '0' : h >= 'a' && h <= 'f' ? h - 'a' + 10 : h >= 'A' && h <= 'F' ? h - 'A' + 10 : -1;
      if (v < 0) return error("4 hex digits after \\u");
      *cp = *cp * 16 + static_cast<uint32_t>(v);
    }
    return absl::OkStatus();
  }
  static void append_utf8(uint32_t cp, std::string* out) {
    if (cp < 0x80) {
      out->push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
      out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
      out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
      out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
  }
  // JSON number grammar: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
  absl::Status number() {
    const size_t start = p_;
    auto digits = [&] {
      const size_t d = p_;
      while (p_ < s_.size() && s_[p_] >= '0' && s_[p_] <= '9') ++p_;
      return p_ > d;
    };
    if (p_ < s_.size() && s_[p_] == '-') ++p_;
    if (p_ < s_.size() && s_[p_] == '0') {
      ++p_;
    } else if (!digits()) {
      p_ = start;
      return error("a JSON value");
    }
    if (p_ < s_.size() && s_[p_] == '.') {
      ++p_;
      if (!digits()) return error("digits after '.'");
    }
    if (p_ < s_.size() && (s_[p_] == 'e' || s_[p_] == 'E')) {
      ++p_;
      if (p_ < s_.size() && (s_[p_] == '+' || s_[p_] == '-')) ++p_;
      if (!digits()) return error("exponent digits");
    }
    return absl::OkStatus();
  }

  std::string_view s_;
  size_t p_ = 0;
  const std::string& file_;
  int64_t line_;
};

}  // namespace

absl::StatusOr<PileRecord> jsonl_parse_record(std::string_view line, const std::string& file, int64_t line_no) {
  Scanner sc(line, file, line_no);
  PileRecord rec;
  bool have_text = false;
  absl::Status st = sc.object(0, [&](const std::string& key) -> absl::Status {
    if (key == "text") {
      if (!sc.peek_string()) return sc.error("a string value for \"text\"");
      have_text = true;
      rec.text.clear();
      return sc.string(&rec.text);
    }
    if (key == "meta" && sc.peek_object()) {
      return sc.object(1, [&](const std::string& k) -> absl::Status {
        if (k == "pile_set_name" && sc.peek_string()) {
          rec.pile_set_name.clear();
          return sc.string(&rec.pile_set_name);
        }
        return sc.skip_value(2);
      });
    }
    return sc.skip_value(1);
  });
  if (!st.ok()) return st;
  if (!sc.at_end()) return sc.error("the end of the line after the JSON object");
  if (!have_text) {
    return absl::InvalidArgumentError(absl::StrCat(file, ":", line_no, ": the record has no \"text\" string"));
  }
  return rec;
}

}  // namespace cmoe::data
