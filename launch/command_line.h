// command_line.h — what every cmoe subcommand does with its arguments, written once: parse the
// flags (launch/flags.h), check the required ones and the number of positional arguments,
// and report usage errors (exit 2) and failures (exit 1) in one format.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "launch/flags.h"

namespace cmoe {

struct CommandSpec {
  std::string name;                    // "train", "checkpoint inspect" (for messages)
  std::vector<FlagSpec> flags;
  std::vector<std::string> required;   // flags that must be given
  int min_positional = 0, max_positional = 0;
  std::string positional = "";         // what the positional arguments are, e.g. "DIR"
};

// The flags every config-reading command takes: --config FILE and repeatable --set k=v.
std::vector<FlagSpec> config_flags();

// Parses argv[first, argc). `--help` prints the usage to stdout and exits 0. On a usage error prints "cmoe NAME: ..." and the usage to stderr
// and returns nullopt: the caller returns kExitUsage.
std::optional<ParsedFlags> parse_command_line(const CommandSpec& spec, int argc, char** argv, int first);

inline constexpr int kExitBadInput = 1, kExitUsage = 2;

// The integer value of --name, `fallback` when absent. A value that is not an integer in
// [min, max] prints "cmoe NAME: --name 'VALUE' is not an integer in [min, max]" to stderr and
// gives nullopt (a usage error).
std::optional<int64_t> flag_int(const ParsedFlags& flags, const std::string& command, const std::string& name,
                                int64_t fallback, int64_t min = INT64_MIN, int64_t max = INT64_MAX);

// Prints "cmoe NAME: MESSAGE" to stderr and returns kExitBadInput.
int command_failed(const std::string& name, const absl::Status& s);

}  // namespace cmoe
