// json.h — a small, strict JSON (RFC 8259) parser and serializer for cmoe's data files.
//
// Used for Hugging Face tokenizer.json and for the Pile's JSON Lines records, and by every
// command and file that writes JSON (metrics.jsonl, --json outputs, exported configs). Strict means: no
// comments, no trailing commas, no leading zeros, no control characters or invalid UTF-8 inside
// strings, no lone surrogate escapes (unless ParseOptions allows them), exactly one value per
// document. Every error names the byte offset, line and column and says what was expected.
//
// A Value owns its children (copies are deep). Objects keep their members in file order and
// allow duplicate keys to be detected (parse rejects them). Lookup by key is linear: objects in
// cmoe's formats are either small or iterated in full (a 50k-entry vocab is walked, not searched).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace cmoe::json {

enum class Type : uint8_t { kNull, kBool, kNumber, kString, kArray, kObject };
const char* type_name(Type t);  // "null", "bool", "number", "string", "array", "object"

struct Member;

class Value {
 public:
  Value() = default;  // null
  static Value boolean(bool b);
  static Value number(double d);
  static Value integer(int64_t i);
  // A number written with a printf format ("%.6f", "%.6e", "%.9g"), for files whose readers
  // expect a fixed number of digits (metrics.jsonl). d must be finite.
  static Value formatted(double d, const char* printf_format);
  static Value string(std::string s);
  static Value array();
  static Value object();

  Type type() const { return type_; }
  bool is_null() const { return type_ == Type::kNull; }
  bool is_bool() const { return type_ == Type::kBool; }
  bool is_number() const { return type_ == Type::kNumber; }
  bool is_string() const { return type_ == Type::kString; }
  bool is_array() const { return type_ == Type::kArray; }
  bool is_object() const { return type_ == Type::kObject; }
  // A number written without fraction or exponent that fits in int64.
  bool is_int() const { return type_ == Type::kNumber && is_int_; }

  // Accessors CMOE_CHECK the type: call them after testing it.
  bool as_bool() const;
  double as_double() const;
  int64_t as_int() const;
  const std::string& as_string() const;
  const std::vector<Value>& as_array() const;
  const std::vector<Member>& as_object() const;

  // Object member by key, nullptr when absent (or when this is not an object).
  const Value* find(std::string_view key) const;

  // Builders (CMOE_CHECK the type). `set` appends; it does not replace an existing key.
  void push_back(Value v);
  void set(std::string key, Value v);

  // The literal of a formatted() number ("" for others).
  const std::string& number_text() const;

  // Byte offset of the value's first character in the parsed text (0 for built values).
  size_t offset() const { return offset_; }

 private:
  friend class Parser;
  Type type_ = Type::kNull;
  bool b_ = false;
  bool is_int_ = false;
  int64_t i_ = 0;
  double d_ = 0;
  size_t offset_ = 0;
  std::string s_;  // kString: the string; kNumber: the literal text of a formatted() number
  std::vector<Value> arr_;
  std::vector<Member> obj_;
};

struct Member {
  std::string key;
  Value value;
};

struct ParseOptions {
  // Python's json module writes lone surrogates (\ud800) that some corpora contain; when set,
  // each becomes U+FFFD instead of being an error.
  bool replace_lone_surrogates = false;
  int max_depth = 256;  // nesting limit, so hostile input cannot exhaust the stack
};

// Parses exactly one JSON value (surrounding whitespace allowed). Errors read
// "offset 123 (line 4, column 7): expected ':' after object key, found 'x'".
absl::StatusOr<Value> parse(std::string_view text, const ParseOptions& options = {});

// Appends `s` as a JSON string literal with quotes. UTF-8 is written raw; control characters,
// '"' and '\\' are escaped; bytes that are not valid UTF-8 become \ufffd (JSON text must be UTF-8).
void append_quoted(std::string* out, std::string_view s);

// Appends `ids` as a JSON array of integers, "[1, 2, 3]" (for long id lists, without building
// a Value per element).
void append_int_array(std::string* out, std::span<const int32_t> ids);

// Serializes a value. indent < 0: one line. indent >= 0: objects and arrays of containers one
// member per line; arrays whose elements are all scalars stay on one line.
std::string serialize(const Value& v, int indent = -1);
// One line with ", " and ": " separators (Python's json.dumps default), for JSON Lines files
// and command output meant for people and scripts alike.
std::string serialize_line(const Value& v);

// Line and column (1-based) of a byte offset, for error messages about parsed values.
std::string describe_offset(std::string_view text, size_t offset);

}  // namespace cmoe::json
