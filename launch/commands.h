// commands.h — the cmoe subcommands; each returns the process exit code.
#pragma once

namespace cmoe {

int cmd_params(int argc, char** argv);  // cmoe params --config FILE [--set k=v]... [--json]
int cmd_data(int argc, char** argv);    // cmoe data inspect|samples ...

}  // namespace cmoe
