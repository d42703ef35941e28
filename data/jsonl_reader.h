// jsonl_reader.h — Pile records from JSON Lines: {"text": ..., "meta": {"pile_set_name": ...}}.
//
// The interface preprocessing uses to pull the two strings it needs out of one line, parsed
// with cmoe's strict JSON parser (core/json.h); lone surrogate escapes become U+FFFD.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace cmoe::data {

struct PileRecord {
  std::string text;           // the document, UTF-8
  std::string pile_set_name;  // "" when the line has no meta.pile_set_name
};

// Parses one line. `file` and `line_no` (1-based) name the place in error messages, which also
// give the byte offset and column, what was found and what was expected.
absl::StatusOr<PileRecord> jsonl_parse_record(std::string_view line, const std::string& file, int64_t line_no);

}  // namespace cmoe::data
