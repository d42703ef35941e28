// config_fuzz.cpp — fuzz entry point for the run-config parser (core/config/config.h): the text a
// user passes as --config and the "path=value" strings of --set.
//
// An input is config text; config_parse must refuse it naming the source or accept it. An
// accepted config goes through config_validate, and one that validates must survive the round
// trip every run makes (config_to_text, as written to <run-dir>/config.textproto and into the
// checkpoint manifest, parses back to the same config). The input's first line is also applied
// with config_set to the parsed (or default) config, as a --set would be, then validated.
// The dictionary holds every field name and enum value of RunConfig, from its descriptor.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <string>
#include <vector>

#include "moe/train/config.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/util/message_differencer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  auto cfg = cmoe::config_parse(text, "fuzz.textproto");
  if (!cfg.ok() && std::string(cfg.status().message()).find("fuzz.textproto") == std::string::npos) {
    std::fprintf(stderr, "config_fuzz: error without the source name: %s\n", std::string(cfg.status().message()).c_str());
    std::abort();
  }
  if (cfg.ok() && cmoe::config_validate(*cfg).ok()) {
    auto again = cmoe::config_parse(cmoe::config_to_text(*cfg), "resaved.textproto");
    if (!again.ok()) {
      std::fprintf(stderr, "config_fuzz: a valid config's text does not parse: %s\n", std::string(again.status().message()).c_str());
      std::abort();
    }
    cmoe::RunConfig full = *cfg;
    cmoe::config_materialise(full);
    std::string diff;
    google::protobuf::util::MessageDifferencer d;
    d.ReportDifferencesToString(&diff);
    if (!d.Compare(full, *again)) {
      std::fprintf(stderr, "config_fuzz: config_to_text does not round-trip a valid config:\n%s\n", diff.c_str());
      std::abort();
    }
    if (!cmoe::config_validate(*again).ok()) {
      std::fprintf(stderr, "config_fuzz: a valid config no longer validates after its round trip\n");
      std::abort();
    }
  }
  cmoe::RunConfig base = cfg.ok() ? *cfg : cmoe::RunConfig();
  const std::string first_line = text.substr(0, text.find('\n'));
  if (cmoe::config_set(base, first_line).ok()) (void)cmoe::config_validate(base);
  return 0;
}

namespace {

void collect(const google::protobuf::Descriptor* d, std::set<std::string>* out, std::set<const void*>* seen) {
  if (!seen->insert(d).second) return;
  for (int i = 0; i < d->field_count(); ++i) {
    const auto* f = d->field(i);
    out->insert(f->name() + ": ");
    out->insert(f->name() + " { ");
    if (f->enum_type() != nullptr)
      for (int v = 0; v < f->enum_type()->value_count(); ++v) out->insert(" " + f->enum_type()->value(v)->name());
    if (f->message_type() != nullptr) collect(f->message_type(), out, seen);
  }
}

}  // namespace

extern "C" const char* const* cmoe_fuzz_dictionary(size_t* count) {
  static const std::vector<const char*> words = [] {
    static std::set<std::string> names = {"{", "}", ":", "\"", "#", "\n", "=", ".", "-1", "0", "1", "2147483648",
                                          "-2147483649", "1e999", "nan", "inf", "-0", "0x10", "true", "false", "'"};
    std::set<const void*> seen;
    collect(cmoe::RunConfig::descriptor(), &names, &seen);
    std::vector<const char*> w;
    for (const std::string& n : names) w.push_back(n.c_str());
    return w;
  }();
  *count = words.size();
  return words.data();
}
