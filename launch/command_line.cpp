// command_line.cpp — see command_line.h.
#include "launch/command_line.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace cmoe {

namespace {

// "usage: cmoe NAME POSITIONAL [flags]" and the flags, one per entry.
std::string usage_of(const CommandSpec& spec) {
  std::string flags = flags_usage(spec.name, spec.flags);
  flags = flags.substr(flags.find('\n') + 1);  // flags_usage's own header line
  std::string head = absl::StrCat("usage: cmoe ", spec.name);
  if (spec.max_positional > 0) absl::StrAppend(&head, " ", spec.positional.empty() ? "ARG" : spec.positional);
  for (const std::string& r : spec.required) absl::StrAppend(&head, " --", r, " VALUE");
  return absl::StrCat(head, " [flags]\n", flags);
}

}  // namespace

std::vector<FlagSpec> config_flags() {
  return {{"config", true, false, "run config (.textproto)"},
          {"set", true, true, "override a config field: path.to.field=value"}};
}

std::optional<ParsedFlags> parse_command_line(const CommandSpec& spec, int argc, char** argv, int first) {
  for (int i = first; i < argc; ++i) {
    if (std::strcmp(argv[i], "--help") == 0 || std::strcmp(argv[i], "-h") == 0) {
      std::fputs(usage_of(spec).c_str(), stdout);
      std::exit(0);  // nothing is open yet
    }
  }
  auto flags = flags_parse(spec.name, spec.flags, argc, argv, first);
  if (!flags.ok()) {
    std::fprintf(stderr, "%s\n", std::string(flags.status().message()).c_str());
    return std::nullopt;
  }
  std::string problem;
  for (const std::string& r : spec.required)
    if (!flags->has(r)) absl::StrAppend(&problem, problem.empty() ? "" : ", ", "--", r, " is required");
  const int n = static_cast<int>(flags->positional.size());
  if (n < spec.min_positional || n > spec.max_positional) {
    absl::StrAppend(&problem, problem.empty() ? "" : "; ");
    if (spec.max_positional == 0) {
      absl::StrAppend(&problem, "unexpected argument '", flags->positional[0], "'");
    } else if (spec.min_positional == spec.max_positional) {
      absl::StrAppend(&problem, "expected ", spec.min_positional, " ", spec.positional, ", got ", n);
    } else {
      absl::StrAppend(&problem, "expected ", spec.min_positional, " to ", spec.max_positional, " ", spec.positional,
                      ", got ", n);
    }
  }
  if (!problem.empty()) {
    std::fprintf(stderr, "cmoe %s: %s\n%s", spec.name.c_str(), problem.c_str(), usage_of(spec).c_str());
    return std::nullopt;
  }
  return *std::move(flags);
}

std::optional<int64_t> flag_int(const ParsedFlags& flags, const std::string& command, const std::string& name,
                                int64_t fallback, int64_t min, int64_t max) {
  if (!flags.has(name)) return fallback;
  int64_t v = 0;
  if (absl::SimpleAtoi(flags.get(name), &v) && v >= min && v <= max) return v;
  std::string range;
  if (min != INT64_MIN || max != INT64_MAX) {
    range = absl::StrCat(" in [", min == INT64_MIN ? std::string("-inf") : absl::StrCat(min), ", ",
                         max == INT64_MAX ? std::string("inf") : absl::StrCat(max), "]");
  }
  std::fprintf(stderr, "cmoe %s: --%s '%s' is not an integer%s\n", command.c_str(), name.c_str(), flags.get(name).c_str(),
               range.c_str());
  return std::nullopt;
}

int command_failed(const std::string& name, const absl::Status& s) {
  std::fprintf(stderr, "cmoe %s: %s\n", name.c_str(), std::string(s.message()).c_str());
  return kExitBadInput;
}

}  // namespace cmoe
