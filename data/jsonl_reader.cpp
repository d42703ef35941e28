// jsonl_reader.cpp — see jsonl_reader.h. Parses the line with cmoe's strict JSON parser
// (core/json.h) and picks out the two strings.
#include "data/jsonl_reader.h"

#include "absl/strings/str_cat.h"
#include "core/json.h"

namespace cmoe::data {

absl::StatusOr<PileRecord> jsonl_parse_record(std::string_view line, const std::string& file, int64_t line_no) {
  const std::string where = absl::StrCat(file, ":", line_no, ": ");
  json::ParseOptions opt;
  opt.replace_lone_surrogates = true;  // Python's json module writes them; they become U+FFFD
  opt.max_depth = 64;
  auto v = json::parse(line, opt);
  if (!v.ok()) return absl::InvalidArgumentError(absl::StrCat(where, v.status().message()));
  if (!v->is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(where, "expected a JSON object {\"text\": ...}, found ",
                                                   json::type_name(v->type())));
  }
  PileRecord rec;
  const json::Value* text = v->find("text");
  if (text == nullptr) return absl::InvalidArgumentError(absl::StrCat(where, "the record has no \"text\" member"));
  if (!text->is_string()) {
    return absl::InvalidArgumentError(absl::StrCat(where, "at column ", text->offset() + 1,
                                                   ": expected a string value for \"text\", found ",
                                                   json::type_name(text->type())));
  }
  rec.text = text->as_string();
  if (const json::Value* meta = v->find("meta"); meta != nullptr && meta->is_object()) {
    if (const json::Value* name = meta->find("pile_set_name"); name != nullptr && name->is_string()) {
      rec.pile_set_name = name->as_string();
    }
  }
  return rec;
}

}  // namespace cmoe::data
