// cmd_params.cpp — `cmoe params`: total and activated parameter counts per component.
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "moe/train/config.h"
#include "launch/commands.h"
#include "launch/command_line.h"
#include "core/json.h"
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
  CommandSpec spec{"params", config_flags(), {"config"}};
  spec.flags.push_back({"json", false, false, "print JSON instead of a table"});
  auto flags = parse_command_line(spec, argc, argv, 2);
  if (!flags) return kExitUsage;
  auto cfg = config_load(flags->get("config"), flags->all("set"));
  if (!cfg.ok()) return command_failed("params", cfg.status());
  ParamCounts pc = count_params(cfg->model());
  if (flags->has("json")) {
    json::Value comps = json::Value::object();
    for (const ParamComponent& c : pc.components) {
      json::Value o = json::Value::object();
      o.set("total", json::Value::integer(c.total));
      o.set("activated", json::Value::integer(c.activated));
      comps.set(c.name, std::move(o));
    }
    json::Value j = json::Value::object();
    j.set("total", json::Value::integer(pc.total));
    j.set("activated", json::Value::integer(pc.activated));
    j.set("components", std::move(comps));
    std::printf("%s\n", json::serialize_line(j).c_str());
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
