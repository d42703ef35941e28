// config.h — loading, overriding and validating run configs (cmoe_config.proto).
//
// A config is a RunConfig in protobuf text format. Overrides are "path.to.field=value" strings
// (the CLI's --set); every scalar field can be set, enums by name (case-insensitive). Errors
// name the file and line, or the field path and the allowed values, and never abort.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/config/cmoe_config.pb.h"
#include "google/protobuf/message.h"

namespace cmoe {

using config::RunConfig;

// Parses `text` (named `source` in messages); unknown fields are errors.
absl::StatusOr<RunConfig> config_parse(const std::string& text, const std::string& source);
// Reads and parses a .textproto file, applies overrides in order, then validates.
absl::StatusOr<RunConfig> config_load(const std::string& path, const std::vector<std::string>& overrides);
// Applies one "path.to.field=value" override.
absl::Status config_set(RunConfig& cfg, const std::string& assignment);
// Checks every field's range and the cross-field rules (heads divide d_model, ep divides dp...).
absl::Status config_validate(const RunConfig& cfg);
// Sets every unset singular field to its default (so two configs compare by value).
void config_materialise(google::protobuf::Message& msg);
// The resolved config as text format, every field written (defaults included).
std::string config_to_text(const RunConfig& cfg);

}  // namespace cmoe
