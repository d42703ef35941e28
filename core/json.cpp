// json.cpp — recursive-descent JSON parser with positioned errors, and the serializer.
#include "core/json.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/check.h"
#include "core/utf8.h"

namespace cmoe::json {

const char* type_name(Type t) {
  switch (t) {
    case Type::kNull: return "null";
    case Type::kBool: return "bool";
    case Type::kNumber: return "number";
    case Type::kString: return "string";
    case Type::kArray: return "array";
    case Type::kObject: return "object";
  }
  return "?";
}

Value Value::boolean(bool b) {
  Value v;
  v.type_ = Type::kBool;
  v.b_ = b;
  return v;
}
Value Value::number(double d) {
  Value v;
  v.type_ = Type::kNumber;
  v.d_ = d;
  return v;
}
Value Value::integer(int64_t i) {
  Value v;
  v.type_ = Type::kNumber;
  v.is_int_ = true;
  v.i_ = i;
  v.d_ = static_cast<double>(i);
  return v;
}
Value Value::formatted(double d, const char* printf_format) {
  CMOE_CHECK(std::isfinite(d), "JSON cannot represent ", d);
  Value v = number(d);
  char buf[64];
  const int n = std::snprintf(buf, sizeof(buf), printf_format, d);
  CMOE_CHECK(n > 0 && n < static_cast<int>(sizeof(buf)), "json: format ", printf_format, " of ", d);
  v.s_.assign(buf, static_cast<size_t>(n));
  return v;
}
Value Value::string(std::string s) {
  Value v;
  v.type_ = Type::kString;
  v.s_ = std::move(s);
  return v;
}
Value Value::array() {
  Value v;
  v.type_ = Type::kArray;
  return v;
}
Value Value::object() {
  Value v;
  v.type_ = Type::kObject;
  return v;
}

bool Value::as_bool() const {
  CMOE_CHECK(is_bool(), "json value is ", type_name(type_), ", not bool");
  return b_;
}
const std::string& Value::number_text() const {
  static const std::string kNone;
  return type_ == Type::kNumber ? s_ : kNone;
}
double Value::as_double() const {
  CMOE_CHECK(is_number(), "json value is ", type_name(type_), ", not number");
  return d_;
}
int64_t Value::as_int() const {
  CMOE_CHECK(is_int(), "json value is not an integer");
  return i_;
}
const std::string& Value::as_string() const {
  CMOE_CHECK(is_string(), "json value is ", type_name(type_), ", not string");
  return s_;
}
const std::vector<Value>& Value::as_array() const {
  CMOE_CHECK(is_array(), "json value is ", type_name(type_), ", not array");
  return arr_;
}
const std::vector<Member>& Value::as_object() const {
  CMOE_CHECK(is_object(), "json value is ", type_name(type_), ", not object");
  return obj_;
}
const Value* Value::find(std::string_view key) const {
  if (!is_object()) return nullptr;
  for (const Member& m : obj_) {
    if (m.key == key) return &m.value;
  }
  return nullptr;
}
void Value::push_back(Value v) {
  CMOE_CHECK(is_array(), "push_back on a json ", type_name(type_));
  arr_.push_back(std::move(v));
}
void Value::set(std::string key, Value v) {
  CMOE_CHECK(is_object(), "set on a json ", type_name(type_));
  obj_.push_back(Member{std::move(key), std::move(v)});
}

std::string describe_offset(std::string_view text, size_t offset) {
  size_t line = 1, col = 1;
  for (size_t i = 0; i < offset && i < text.size(); ++i) {
    if (text[i] == '\n') {
      ++line;
      col = 1;
    } else {
      ++col;
    }
  }
  return absl::StrCat("offset ", offset, " (line ", line, ", column ", col, ")");
}

namespace {

std::string describe_char(std::string_view text, size_t i) {
  if (i >= text.size()) return "end of input";
  unsigned char c = static_cast<unsigned char>(text[i]);
  if (c >= 0x20 && c < 0x7F) return absl::StrFormat("'%c'", c);
  return absl::StrFormat("byte 0x%02x", c);
}

}  // namespace

class Parser {
 public:
  Parser(std::string_view text, const ParseOptions& opts)
      : text_(text), p_(reinterpret_cast<const unsigned char*>(text.data())), n_(text.size()), opts_(opts) {}

  absl::StatusOr<Value> run() {
    Value v;
    skip_ws();
    CMOE_RETURN_IF_ERROR(parse_value(&v, 0));
    skip_ws();
    if (i_ != n_) return error(i_, "expected end of input after the top-level value");
    return v;
  }

 private:
  absl::Status error(size_t at, const std::string& what) const {
    return absl::InvalidArgumentError(
        absl::StrCat(describe_offset(text_, at), ": ", what, ", found ", describe_char(text_, at)));
  }

  void skip_ws() {
    while (i_ < n_ && (p_[i_] == ' ' || p_[i_] == '\n' || p_[i_] == '\r' || p_[i_] == '\t')) ++i_;
  }

  absl::Status parse_value(Value* v, int depth) {
    if (i_ >= n_) return error(i_, "expected a value");
    v->offset_ = i_;
    switch (p_[i_]) {
      case '{': return parse_object(v, depth + 1);
      case '[': return parse_array(v, depth + 1);
      case '"':
        v->type_ = Type::kString;
        return parse_string(&v->s_);
      case 't': return parse_literal(v, "true", Type::kBool, true);
      case 'f': return parse_literal(v, "false", Type::kBool, false);
      case 'n': return parse_literal(v, "null", Type::kNull, false);
      default:
        if (p_[i_] == '-' || (p_[i_] >= '0' && p_[i_] <= '9')) return parse_number(v);
        return error(i_, "expected a value (object, array, string, number, true, false or null)");
    }
  }

  absl::Status parse_literal(Value* v, const char* word, Type t, bool b) {
    size_t len = std::strlen(word);
    if (n_ - i_ < len || std::memcmp(p_ + i_, word, len) != 0) {
      return error(i_, absl::StrCat("expected '", word, "'"));
    }
    i_ += len;
    v->type_ = t;
    v->b_ = b;
    return absl::OkStatus();
  }

  absl::Status parse_number(Value* v) {
    size_t start = i_;
    bool integral = true;
    if (p_[i_] == '-') ++i_;
    if (i_ >= n_ || !(p_[i_] >= '0' && p_[i_] <= '9')) return error(i_, "expected a digit in number");
    if (p_[i_] == '0') {
      ++i_;
      if (i_ < n_ && p_[i_] >= '0' && p_[i_] <= '9') return error(i_, "leading zeros are not allowed in numbers");
    } else {
      while (i_ < n_ && p_[i_] >= '0' && p_[i_] <= '9') ++i_;
    }
    if (i_ < n_ && p_[i_] == '.') {
      integral = false;
      ++i_;
      if (i_ >= n_ || !(p_[i_] >= '0' && p_[i_] <= '9')) return error(i_, "expected a digit after '.'");
      while (i_ < n_ && p_[i_] >= '0' && p_[i_] <= '9') ++i_;
    }
    if (i_ < n_ && (p_[i_] == 'e' || p_[i_] == 'E')) {
      integral = false;
      ++i_;
      if (i_ < n_ && (p_[i_] == '+' || p_[i_] == '-')) ++i_;
      if (i_ >= n_ || !(p_[i_] >= '0' && p_[i_] <= '9')) return error(i_, "expected a digit in exponent");
      while (i_ < n_ && p_[i_] >= '0' && p_[i_] <= '9') ++i_;
    }
    const char* b = text_.data() + start;
    const char* e = text_.data() + i_;
    v->type_ = Type::kNumber;
    if (integral) {
      auto r = std::from_chars(b, e, v->i_);
      v->is_int_ = r.ec == std::errc() && r.ptr == e;
    }
    auto r = std::from_chars(b, e, v->d_);
    if (r.ec == std::errc::result_out_of_range) return error(start, "number out of the range of a double");
    CMOE_CHECK(r.ec == std::errc() && r.ptr == e, "from_chars rejected a validated number");
    return absl::OkStatus();
  }

  static int hex_value(unsigned char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  }

  // Reads the 4 hex digits of a \u escape at i_ (after "\u").
  absl::Status read_hex4(char32_t* out) {
    if (n_ - i_ < 4) return error(i_, "expected 4 hex digits after \\u");
    char32_t v = 0;
    for (int k = 0; k < 4; ++k) {
      int h = hex_value(p_[i_ + k]);
      if (h < 0) return error(i_ + k, "expected a hex digit in \\u escape");
      v = (v << 4) | static_cast<char32_t>(h);
    }
    i_ += 4;
    *out = v;
    return absl::OkStatus();
  }

  absl::Status parse_string(std::string* out) {
    size_t open = i_;
    ++i_;  // opening quote
    out->clear();
    while (true) {
      // Fast path: copy a run of plain ASCII.
      size_t run = i_;
      while (i_ < n_ && p_[i_] >= 0x20 && p_[i_] < 0x80 && p_[i_] != '"' && p_[i_] != '\\') ++i_;
      out->append(text_.data() + run, i_ - run);
      if (i_ >= n_) return error(open, "unterminated string (no closing quote before end of input)");
      unsigned char c = p_[i_];
      if (c == '"') {
        ++i_;
        return absl::OkStatus();
      }
      if (c < 0x20) return error(i_, "control characters must be escaped inside strings");
      if (c >= 0x80) {
        char32_t cp;
        int len = unicode::decode_utf8(p_, n_, i_, &cp);
        if (cp == unicode::kInvalid) return error(i_, "invalid UTF-8 in string");
        out->append(text_.data() + i_, len);
        i_ += len;
        continue;
      }
      // Backslash escape.
      size_t esc = i_;
      ++i_;
      if (i_ >= n_) return error(esc, "unterminated escape");
      switch (p_[i_++]) {
        case '"': out->push_back('"'); break;
        case '\\': out->push_back('\\'); break;
        case '/': out->push_back('/'); break;
        case 'b': out->push_back('\b'); break;
        case 'f': out->push_back('\f'); break;
        case 'n': out->push_back('\n'); break;
        case 'r': out->push_back('\r'); break;
        case 't': out->push_back('\t'); break;
        case 'u': {
          char32_t cp = 0;
          CMOE_RETURN_IF_ERROR(read_hex4(&cp));
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            // High surrogate: a low surrogate escape must follow.
            if (n_ - i_ >= 6 && p_[i_] == '\\' && p_[i_ + 1] == 'u') {
              size_t save = i_;
              i_ += 2;
              char32_t lo = 0;
              CMOE_RETURN_IF_ERROR(read_hex4(&lo));
              if (lo >= 0xDC00 && lo <= 0xDFFF) {
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
              } else {
                i_ = save;
                if (!opts_.replace_lone_surrogates) return error(esc, "lone high surrogate in \\u escape");
                cp = unicode::kReplacement;
              }
            } else {
              if (!opts_.replace_lone_surrogates) return error(esc, "lone high surrogate in \\u escape");
              cp = unicode::kReplacement;
            }
          } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            if (!opts_.replace_lone_surrogates) return error(esc, "lone low surrogate in \\u escape");
            cp = unicode::kReplacement;
          }
          unicode::append_utf8(out, cp);
          break;
        }
        default:
          return error(esc + 1, "invalid escape (expected one of \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\u)");
      }
    }
  }

  absl::Status parse_array(Value* v, int depth) {
    if (depth > opts_.max_depth) return error(i_, absl::StrCat("nesting deeper than ", opts_.max_depth));
    v->type_ = Type::kArray;
    ++i_;
    skip_ws();
    if (i_ < n_ && p_[i_] == ']') {
      ++i_;
      return absl::OkStatus();
    }
    while (true) {
      v->arr_.emplace_back();
      CMOE_RETURN_IF_ERROR(parse_value(&v->arr_.back(), depth));
      skip_ws();
      if (i_ < n_ && p_[i_] == ',') {
        ++i_;
        skip_ws();
        continue;
      }
      if (i_ < n_ && p_[i_] == ']') {
        ++i_;
        return absl::OkStatus();
      }
      return error(i_, "expected ',' or ']' after array element");
    }
  }

  // Duplicate keys are almost always a broken file (and make lookups ambiguous): reject them.
  absl::Status check_duplicate_keys(const Value& v, const std::vector<size_t>& key_offsets) const {
    const std::vector<Member>& o = v.obj_;
    if (o.size() < 2) return absl::OkStatus();
    std::vector<uint32_t> order(o.size());
    for (size_t k = 0; k < o.size(); ++k) order[k] = static_cast<uint32_t>(k);
    std::sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) {
      return o[a].key != o[b].key ? o[a].key < o[b].key : a < b;
    });
    for (size_t k = 1; k < order.size(); ++k) {
      if (o[order[k]].key == o[order[k - 1]].key) {
        return error(key_offsets[order[k]], absl::StrCat("duplicate key \"", o[order[k]].key, "\""));
      }
    }
    return absl::OkStatus();
  }

  absl::Status parse_object(Value* v, int depth) {
    if (depth > opts_.max_depth) return error(i_, absl::StrCat("nesting deeper than ", opts_.max_depth));
    v->type_ = Type::kObject;
    ++i_;
    skip_ws();
    if (i_ < n_ && p_[i_] == '}') {
      ++i_;
      return absl::OkStatus();
    }
    std::vector<size_t> key_offsets;
    while (true) {
      if (i_ >= n_ || p_[i_] != '"') return error(i_, "expected a string key in object");
      size_t key_at = i_;
      Member m;
      CMOE_RETURN_IF_ERROR(parse_string(&m.key));
      key_offsets.push_back(key_at);
      skip_ws();
      if (i_ >= n_ || p_[i_] != ':') return error(i_, "expected ':' after object key");
      ++i_;
      skip_ws();
      CMOE_RETURN_IF_ERROR(parse_value(&m.value, depth));
      v->obj_.push_back(std::move(m));
      skip_ws();
      if (i_ < n_ && p_[i_] == ',') {
        ++i_;
        skip_ws();
        continue;
      }
      if (i_ < n_ && p_[i_] == '}') {
        ++i_;
        return check_duplicate_keys(*v, key_offsets);
      }
      return error(i_, "expected ',' or '}' after object member");
    }
  }

  std::string_view text_;
  const unsigned char* p_;
  size_t n_;
  size_t i_ = 0;
  ParseOptions opts_;
};

absl::StatusOr<Value> parse(std::string_view text, const ParseOptions& options) {
  Parser p(text, options);
  return p.run();
}

void append_quoted(std::string* out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  out->push_back('"');
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  size_t i = 0, n = s.size();
  while (i < n) {
    unsigned char c = p[i];
    if (c >= 0x80) {
      char32_t cp;
      int len = unicode::decode_utf8(p, n, i, &cp);
      if (cp == unicode::kInvalid) {
        out->append("\\ufffd");
      } else {
        out->append(s.data() + i, len);
      }
      i += len;
      continue;
    }
    switch (c) {
      case '"': out->append("\\\""); break;
      case '\\': out->append("\\\\"); break;
      case '\n': out->append("\\n"); break;
      case '\r': out->append("\\r"); break;
      case '\t': out->append("\\t"); break;
      case '\b': out->append("\\b"); break;
      case '\f': out->append("\\f"); break;
      default:
        if (c < 0x20 || c == 0x7F) {
          out->append("\\u00");
          out->push_back(kHex[c >> 4]);
          out->push_back(kHex[c & 15]);
        } else {
          out->push_back(static_cast<char>(c));
        }
    }
    ++i;
  }
  out->push_back('"');
}

namespace {

bool is_container(const Value& v) { return v.is_array() || v.is_object(); }

// indent -2: one line with spaced separators (serialize_line).
void serialize_to(const Value& v, int indent, int level, std::string* out) {
  const bool spaced = indent == -2;
  auto newline = [&](int lvl) {
    out->push_back('\n');
    out->append(static_cast<size_t>(indent) * lvl, ' ');
  };
  switch (v.type()) {
    case Type::kNull: out->append("null"); return;
    case Type::kBool: out->append(v.as_bool() ? "true" : "false"); return;
    case Type::kNumber:
      if (!v.number_text().empty()) {
        out->append(v.number_text());
      } else if (v.is_int()) {
        absl::StrAppend(out, v.as_int());
      } else {
        CMOE_CHECK(std::isfinite(v.as_double()), "JSON cannot represent ", v.as_double());
        char buf[32];
        auto r = std::to_chars(buf, buf + sizeof(buf), v.as_double());  // shortest round-trip form
        out->append(buf, r.ptr);
      }
      return;
    case Type::kString: append_quoted(out, v.as_string()); return;
    case Type::kArray: {
      const auto& a = v.as_array();
      bool multiline = indent >= 0;
      if (multiline) {
        multiline = false;
        for (const Value& e : a) multiline |= is_container(e) && !(e.is_array() && e.as_array().size() <= 4);
      }
      out->push_back('[');
      for (size_t k = 0; k < a.size(); ++k) {
        if (k) out->append(multiline ? "," : (indent >= 0 || spaced ? ", " : ","));
        if (multiline) newline(level + 1);
        serialize_to(a[k], multiline ? indent : (spaced ? -2 : -1), level + 1, out);
      }
      if (multiline && !a.empty()) newline(level);
      out->push_back(']');
      return;
    }
    case Type::kObject: {
      const auto& o = v.as_object();
      out->push_back('{');
      for (size_t k = 0; k < o.size(); ++k) {
        if (k) out->append(spaced ? ", " : ",");
        if (indent >= 0) newline(level + 1);
        append_quoted(out, o[k].key);
        out->append(indent >= 0 || spaced ? ": " : ":");
        serialize_to(o[k].value, indent, level + 1, out);
      }
      if (indent >= 0 && !o.empty()) newline(level);
      out->push_back('}');
      return;
    }
  }
}

}  // namespace

std::string serialize(const Value& v, int indent) {
  std::string out;
  serialize_to(v, indent < 0 ? -1 : indent, 0, &out);
  return out;
}

void append_int_array(std::string* out, std::span<const int32_t> ids) {
  out->push_back('[');
  for (size_t k = 0; k < ids.size(); ++k) {
    if (k) out->append(", ");
    absl::StrAppend(out, ids[k]);
  }
  out->push_back(']');
}

std::string serialize_line(const Value& v) {
  std::string out;
  serialize_to(v, -2, 0, &out);
  return out;
}

}  // namespace cmoe::json
