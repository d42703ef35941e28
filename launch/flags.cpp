// flags.cpp — see flags.h.
#include "launch/flags.h"

#include "absl/strings/str_cat.h"

namespace cmoe {

std::string flags_usage(const std::string& command, const std::vector<FlagSpec>& specs) {
  std::string out = absl::StrCat("usage: cmoe ", command, " [flags]\n");
  for (const FlagSpec& s : specs) {
    absl::StrAppend(&out, "  --", s.name, s.takes_value ? (s.multi ? " VALUE..." : " VALUE") : "",
                    s.repeatable ? " (repeatable)" : "",
                    "\n      ", s.help, "\n");
  }
  return out;
}

absl::StatusOr<ParsedFlags> flags_parse(const std::string& command, const std::vector<FlagSpec>& specs,
                                        int argc, char** argv, int first) {
  ParsedFlags out;
  for (int i = first; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg.rfind("--", 0) != 0) {
      out.positional.push_back(arg);
      continue;
    }
    std::string name = arg.substr(2), value;
    bool inline_value = false;
    if (size_t eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      inline_value = true;
    }
    const FlagSpec* spec = nullptr;
    for (const FlagSpec& s : specs)
      if (s.name == name) spec = &s;
    if (spec == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("cmoe ", command, ": unknown flag --", name, "\n",
                                                     flags_usage(command, specs)));
    }
    if (spec->takes_value && !inline_value) {
      if (i + 1 >= argc) {
        return absl::InvalidArgumentError(absl::StrCat("cmoe ", command, ": --", name, " needs a value"));
      }
      value = argv[++i];
    }
    if (!spec->takes_value && inline_value) {
      return absl::InvalidArgumentError(absl::StrCat("cmoe ", command, ": --", name, " takes no value"));
    }
    if (!spec->repeatable && !spec->multi && out.values.count(name)) {
      return absl::InvalidArgumentError(absl::StrCat("cmoe ", command, ": --", name, " given twice"));
    }
    out.values[name].push_back(spec->takes_value ? value : "true");
    if (spec->multi && spec->takes_value && !inline_value) {  // --input A B C: up to the next --flag
      while (i + 1 < argc && std::string(argv[i + 1]).rfind("--", 0) != 0) out.values[name].push_back(argv[++i]);
    }
  }
  return out;
}

}  // namespace cmoe
