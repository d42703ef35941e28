// config.h — loading, overriding and validating run configs (run_config.proto, whose model
// section is moe/model_config.proto).
//
// A config is a RunConfig in protobuf text format. Overrides are "path.to.field=value" strings
// (the CLI's --set); every scalar field can be set, enums by name (case-insensitive). Errors
// name the file and line, or the field path and the allowed values, and never abort.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/dtype.h"
#include "google/protobuf/message.h"
#include "moe/train/run_config.pb.h"
#include "parallel/process_groups.h"

namespace cmoe {

using config::RunConfig;

// Parses `text` (named `source` in messages); unknown fields are errors.
absl::StatusOr<RunConfig> config_parse(const std::string& text, const std::string& source);
// Parses protobuf text into msg; errors name source, line and column, one per line.
absl::Status textproto_parse(const std::string& text, const std::string& source, google::protobuf::Message* msg);
// Reads and parses a .textproto file, applies overrides in order, then validates.
absl::StatusOr<RunConfig> config_load(const std::string& path, const std::vector<std::string>& overrides);
// Applies one "path.to.field=value" override.
absl::Status config_set(RunConfig& cfg, const std::string& assignment);
// Checks every field's range and the cross-field rules (heads divide d_model, ep divides dp...),
// including config_validate_layout for cfg.parallel.
absl::Status config_validate(const RunConfig& cfg);
// The one place a (pp, dp, ep) layout is checked against the model: ep divides dp and the
// experts of every set, expert parallelism only for MoE models and dropless, pp <= n_layers.
// (parallel::validate_layout checks the layout against the number of ranks.)
absl::Status config_validate_layout(const RunConfig& cfg, const parallel::ParallelLayout& layout);
// Sets every unset singular field to its default (so two configs compare by value).
void config_materialise(google::protobuf::Message& msg);
// train.precision as the matmul compute dtype: "f32" -> f32, "bf16" -> bf16; anything else
// InvalidArgument naming the field. The one place precision names are read.
absl::StatusOr<DType> precision_dtype(const std::string& precision);
// The compute dtype of a validated config.
DType compute_dtype(const config::TrainConfig& t);

// The resolved config as text format, every field written (defaults included).
std::string config_to_text(const RunConfig& cfg);

}  // namespace cmoe
