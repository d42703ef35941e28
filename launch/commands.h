// commands.h — the cmoe subcommands; each returns the process exit code.
#pragma once

namespace cmoe {

int cmd_params(int argc, char** argv);  // cmoe params --config FILE [--set k=v]... [--json]
int cmd_tokenizer(int argc, char** argv);  // cmoe tokenizer train|encode|decode ...

}  // namespace cmoe
