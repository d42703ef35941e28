// commands.h — the cmoe subcommands; each returns the process exit code.
#pragma once

namespace cmoe {

int cmd_params(int argc, char** argv);  // cmoe params --config FILE [--set k=v]... [--json]
int cmd_data(int argc, char** argv);    // cmoe data inspect|samples ...
// cmoe export --checkpoint DIR [--format safetensors] --out FILE [--dtype f32|bf16]
int cmd_export(int argc, char** argv);

}  // namespace cmoe
