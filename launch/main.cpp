// main.cpp — the `cmoe` command-line entry point: dispatches subcommands.
//
// The command table below is the list `cmoe help` prints; docs/cli.md documents every command
// and flag.
#include <omp.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "core/cpu/kernels.h"
#include "launch/commands.h"
#include "core/cuda/cuda_backend.h"
#include "oneapi/dnnl/dnnl.hpp"

namespace {

// Every command, in the order `cmoe help` lists them; subcommands on their own lines.
struct Command {
  const char* name;
  const char* usage;  // after "cmoe NAME"
  const char* summary;
  int (*run)(int argc, char** argv);
};

int run_version(int, char**) {
  std::printf("cmoe %s\n", CMOE_VERSION);
  return 0;
}
int cmd_info();
int run_info(int, char**) { return cmd_info(); }

constexpr Command kCommands[] = {
    {"version", "", "print the cmoe version", run_version},
    {"info", "", "machine facts cmoe uses: CPU features, threads, oneDNN, CUDA", run_info},
    {"params", "--config FILE [--set k=v]... [--json]", "total and activated parameter counts of a config", cmoe::cmd_params},
    {"train", "--config FILE --run-dir DIR [--set k=v]... [--resume DIR]", "train a model (mpirun for several ranks)",
     cmoe::cmd_train},
    {"eval", "--config FILE --checkpoint DIR [--set k=v]... [--disable-top1] [--json]",
     "validation loss and perplexity of a checkpoint", cmoe::cmd_eval},
    {"generate", "--checkpoint DIR --tokenizer FILE --prompt TEXT|--input FILE [--max-new-tokens N] [--temperature T] "
     "[--top-k K] [--top-p P] [--seed S] [--disable-top1] [--json]", "generate text from a checkpoint (KV cache, streamed)",
     cmoe::cmd_generate},
    {"data", "inspect|samples PREFIX ...", "inspect datasets (Megatron .bin/.idx, llm.c shards), Megatron sample order",
     cmoe::cmd_data},
    {"tokenizer", "train|encode|decode ...", "train a byte-level BPE tokenizer, encode text to ids, decode ids",
     cmoe::cmd_tokenizer},
    {"preprocess", "--input FILE... --tokenizer FILE --output-prefix P ...",
     "tokenize .txt/.jsonl/.jsonl.zst into Megatron .bin/.idx datasets", cmoe::cmd_preprocess},
    {"export", "--checkpoint DIR --out FILE [--dtype f32|bf16]", "a checkpoint's weights as safetensors, Hugging Face names",
     cmoe::cmd_export},
    {"checkpoint", "inspect|verify|reshard DIR ...", "look inside, verify, or reshard a checkpoint", cmoe::cmd_checkpoint},
    {"plan", "--config FILE --gpus N [--hardware h100|h200|a100|cpu|FILE] [--json] ...",
     "memory, communication and step time of every (pp, dp, ep) layout on N devices, ranked", cmoe::cmd_plan},
};

// Subcommand lines of `cmoe help` (each command also prints its own usage).
constexpr const char* kSubcommands[][2] = {
    {"data inspect PREFIX [--json] [--docs N] [--unigram]", "header facts, documents, unigram entropy"},
    {"data samples PREFIX --seq-length T --num-samples N ...", "Megatron's GPT sample order and tokens"},
    {"tokenizer train --input FILE... --vocab-size N --output F", "learn a byte-level BPE vocabulary"},
    {"tokenizer encode --tokenizer F --input FILE [--json]", "text to ids"},
    {"tokenizer decode --tokenizer F --input FILE [--bytes]", "ids to text"},
    {"checkpoint inspect DIR [--json] [--tensors]", "manifest, layout, files, tensor index"},
    {"checkpoint verify DIR", "every file, size and CRC-32C, as a resume would check"},
    {"checkpoint reshard DIR --out ROOT --set parallel.X=N...", "rewrite for another (pp, dp, ep) layout"},
};

void print_usage(std::FILE* out) {
  std::fputs("usage: cmoe <command> [flags]\n\ncommands:\n", out);
  for (const Command& c : kCommands) std::fprintf(out, "  %-11s %s\n", c.name, c.summary);
  std::fputs("  help        this list\n\nsubcommands:\n", out);
  for (const auto& s : kSubcommands) std::fprintf(out, "  cmoe %s\n      %s\n", s[0], s[1]);
  std::fputs("\nEach command's flags: cmoe COMMAND --help. See docs/cli.md for every command and flag.\n", out);
}

int cmd_info() {
  const dnnl_version_t* v = dnnl_version();
  std::printf("cmoe %s\n", CMOE_VERSION);
  std::printf("cpu: avx512 %s, avx512_bf16 %s, openmp threads %d\n",
              cmoe::cpu::has_avx512() ? "yes" : "no", cmoe::cpu::has_avx512bf16() ? "yes" : "no",
              omp_get_max_threads());
  std::printf("onednn: %d.%d.%d (%s)\n", v->major, v->minor, v->patch, v->cpu_runtime == DNNL_RUNTIME_OMP ? "openmp" : "other");
  // Loads the CUDA plugin: the only command that does so unasked (docs/cuda-backend.md).
  std::printf("cuda: %s\n", cmoe::cuda::describe_backend().c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h") || !std::strcmp(argv[1], "help")) {
    print_usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  const std::string cmd = std::strcmp(argv[1], "--version") == 0 ? "version" : argv[1];
  for (const Command& c : kCommands)
    if (cmd == c.name) return c.run(argc, argv);
  std::fprintf(stderr, "cmoe: unknown command '%s'\n\n", cmd.c_str());
  print_usage(stderr);
  return 2;
}
