// tokenizer_json_fuzz.cpp — fuzz entry point for the tokenizer.json loader (and the JSON parser
// under it). Any input must give either a clear error or a tokenizer that encodes, decodes
// back to the exact bytes (without a normalizer, prefix space or stripping tokens) and survives a to_json/from_json round trip.
// Built as a libFuzzer target with -DCMOE_FUZZ=ON under clang, and always with the seeded
// mutation driver (tests/fuzz/fuzz_driver.cpp) that CTest runs for a few seconds.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "core/check.h"
#include "core/json.h"
#include "data/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto value = cmoe::json::parse(text);
  if (value.ok()) {
    auto again = cmoe::json::parse(cmoe::json::serialize(*value, 2));
    CMOE_CHECK(again.ok(), "serialized JSON does not parse: ", again.status().message());
  }
  auto tok = cmoe::Tokenizer::from_json(text, "fuzz");
  if (!tok.ok()) {
    CMOE_CHECK(!tok.status().message().empty(), "error without a message");
    return 0;
  }
  static constexpr std::string_view kSample =
      "The cat's 42 \xC3\xA9t\xC3\xA9s  \n\n<mask> caf\x65\xCC\x81 \xF0\x9F\x98\x80 \xFF\xFE bytes";
  std::vector<int32_t> ids = tok->encode(kSample);
  auto bytes = tok->decode_bytes(ids);
  CMOE_CHECK(bytes.ok(), "ids from encode do not decode: ", bytes.status().message());
  bool strips = false;  // lstrip/rstrip tokens swallow whitespace by design
  for (const cmoe::AddedToken& a : tok->spec().added_tokens) strips |= a.lstrip || a.rstrip;
  if (tok->spec().normalizer == cmoe::Normalizer::kNone && !tok->spec().add_prefix_space && !strips) {
    CMOE_CHECK(*bytes == kSample, "encode/decode is not the identity");
  }
  auto reloaded = cmoe::Tokenizer::from_json(tok->to_json(), "fuzz-resaved");
  CMOE_CHECK(reloaded.ok(), "saved tokenizer does not load: ", reloaded.status().message());
  CMOE_CHECK(reloaded->spec() == tok->spec(), "save/load changed the tokenizer");
  CMOE_CHECK(reloaded->encode(kSample) == ids, "save/load changed the ids");
  return 0;
}

extern "C" const char* const* cmoe_fuzz_dictionary(size_t* count) {
  static const char* const kWords[] = {"{", "}", "[", "]", "\"", ",", ":", "null", "true", "false", "0", "-1", "1e999",
                                       "\\u", "\\ud800", "\"type\"", "\"BPE\"", "\"NFC\"", "\"ByteLevel\"", "\"Sequence\"",
                                       "\"Split\"", "\xFF", "\xC3", " ", "\"merges\"", "\"vocab\"", "\"added_tokens\"",
                                       "\"normalizer\"", "\"pre_tokenizer\"", "\"decoder\"", "\"model\"", "\"content\"",
                                       "\"special\"", "\"normalized\"", "\"lstrip\"", "\"rstrip\"", "\"id\"",
                                       "\"add_prefix_space\"", "\"use_regex\"", "2147483648", "\"\""};
  *count = sizeof(kWords) / sizeof(kWords[0]);
  return kWords;
}
