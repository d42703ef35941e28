// flags.h — a small, strict command-line flag parser for cmoe's subcommands.
//
// Accepts `--name value`, `--name=value`, boolean `--name`, repeatable flags (--set), and
// multi-value flags (`--input A B C`: every argument up to the next --flag).
// Anything not declared is an error naming the flag and listing the valid ones.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace cmoe {

struct FlagSpec {
  std::string name;  // without dashes
  bool takes_value = true;
  bool repeatable = false;
  std::string help;
  bool multi = false;  // takes one or more values: every following argument up to the next --flag
};

struct ParsedFlags {
  std::map<std::string, std::vector<std::string>> values;  // name -> values in order
  std::vector<std::string> positional;
  bool has(const std::string& n) const { return values.count(n) > 0; }
  std::string get(const std::string& n, const std::string& fallback = "") const {
    auto it = values.find(n);
    return it == values.end() ? fallback : it->second.back();
  }
  std::vector<std::string> all(const std::string& n) const {
    auto it = values.find(n);
    return it == values.end() ? std::vector<std::string>{} : it->second;
  }
};

// Parses argv[first..argc) against specs; `command` names the subcommand in messages.
absl::StatusOr<ParsedFlags> flags_parse(const std::string& command, const std::vector<FlagSpec>& specs,
                                        int argc, char** argv, int first);
std::string flags_usage(const std::string& command, const std::vector<FlagSpec>& specs);

}  // namespace cmoe
