// cmd_params.cpp — `cmoe params`: total and activated parameter counts per component.
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "moe/train/config.h"
#include "launch/commands.h"
#include "launch/flags.h"
#include "moe/params.h"

namespace cmoe {

namespace {
std::string with_commas(int64_t v) {
  std::string digits = absl::StrCat(v), out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}
}  // namespace

int cmd_params(int argc, char** argv) {
  const std::vector<FlagSpec> specs = {
      {"config", true, false, "run config (.textproto)"},
      {"set", true, true, "override a config field: path.to.field=value"},
      {"json", false, false, "print JSON instead of a table"},
  };
  auto flags = flags_parse("params", specs, argc, argv, 2);
  if (!flags.ok()) {
    std::fprintf(stderr, "%s\n", std::string(flags.status().message()).c_str());
    return 2;
  }
  if (!flags->has("config") || !flags->positional.empty()) {
    std::fprintf(stderr, "cmoe params: --config FILE is required and positional arguments are not accepted\n%s",
                 flags_usage("params", specs).c_str());
    return 2;
  }
  auto cfg = config_load(flags->get("config"), flags->all("set"));
  if (!cfg.ok()) {
    std::fprintf(stderr, "cmoe params: %s\n", std::string(cfg.status().message()).c_str());
    return 1;
  }
  ParamCounts pc = count_params(cfg->model());
  if (flags->has("json")) {
    std::string comps;
    for (const ParamComponent& c : pc.components) {
      absl::StrAppend(&comps, comps.empty() ? "" : ", ", "\"", c.name, "\": {\"total\": ", c.total,
                      ", \"activated\": ", c.activated, "}");
    }
    std::printf("{\"total\": %lld, \"activated\": %lld, \"components\": {%s}}\n",
                static_cast<long long>(pc.total), static_cast<long long>(pc.activated), comps.c_str());
    return 0;
  }
  std::printf("%-16s %16s %16s\n", "component", "total", "activated");
  for (const ParamComponent& c : pc.components) {
    std::printf("%-16s %16s %16s\n", c.name.c_str(), with_commas(c.total).c_str(),
                with_commas(c.activated).c_str());
  }
  std::printf("%-16s %16s %16s\n", "all", absl::StrFormat("%.2fM", pc.total / 1e6).c_str(),
              absl::StrFormat("%.2fM", pc.activated / 1e6).c_str());
  return 0;
}

}  // namespace cmoe
