// commands.h — the cmoe subcommands; each returns the process exit code.
#pragma once

namespace cmoe {

int cmd_params(int argc, char** argv);  // cmoe params --config FILE [--set k=v]... [--json]
int cmd_data(int argc, char** argv);    // cmoe data inspect|samples ...
int cmd_train(int argc, char** argv);   // cmoe train --config FILE --run-dir DIR [--set k=v]... [--resume DIR]
int cmd_eval(int argc, char** argv);    // cmoe eval --config FILE --checkpoint DIR [--disable-top1] [--json]
// cmoe generate --checkpoint DIR --tokenizer FILE (--prompt TEXT | --input FILE) [sampling flags]...
int cmd_generate(int argc, char** argv);
int cmd_preprocess(int argc, char** argv);  // cmoe preprocess --input FILE... --tokenizer FILE --output-prefix P ...
int cmd_tokenizer(int argc, char** argv);  // cmoe tokenizer train|encode|decode ...
// cmoe export --checkpoint DIR [--format safetensors] --out FILE [--dtype f32|bf16]
int cmd_export(int argc, char** argv);
int cmd_checkpoint(int argc, char** argv);
// cmoe plan --config FILE --gpus N [--gpus-per-node G] [--hardware h100|h200|a100|cpu|FILE] [--json] ...
int cmd_plan(int argc, char** argv);  // cmoe checkpoint inspect|verify DIR [--json] [--tensors]

}  // namespace cmoe
