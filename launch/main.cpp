// main.cpp — the `cmoe` command-line entry point: dispatches subcommands.
//
// Subcommands: `version`, `info`, `params`, `data`, `train`, `eval`, `export` (docs/cli.md lists them all). Checkpoint
// commands arrive with their modules; docs/cli.md lists what exists.
#include <omp.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "core/cpu/kernels.h"
#include "launch/commands.h"
#include "core/cuda/cuda_backend.h"
#include "oneapi/dnnl/dnnl.hpp"

namespace {

constexpr const char* kUsage =
    "usage: cmoe <command> [flags]\n"
    "\n"
    "commands:\n"
    "  version   print the cmoe version\n"
    "  info      print the machine facts cmoe uses (CPU features, threads, oneDNN, CUDA)\n"
    "  params    total and activated parameter counts of a config, per component\n"
    "  data      inspect datasets (Megatron .bin/.idx, llm.c shards) and dump Megatron sample order\n"
    "  train     train a model: --config FILE --run-dir DIR [--set k=v]... [--resume DIR]\n"
    "  eval      validation loss and perplexity of a checkpoint: --config FILE --checkpoint DIR\n"
    "  tokenizer train a byte-level BPE tokenizer, encode text to ids, decode ids\n"
    "  preprocess tokenize .txt/.jsonl/.jsonl.zst into Megatron .bin/.idx datasets\n"
    "  export    a checkpoint's weights as safetensors with Hugging Face names\n"
    "  checkpoint inspect|verify a checkpoint directory (manifest, tensors, every CRC)\n"
    "\n"
    "See docs/cli.md for every command and flag.\n";

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
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h") ||
      !std::strcmp(argv[1], "help")) {
    std::fputs(kUsage, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  std::string cmd = argv[1];
  if (cmd == "version" || cmd == "--version") {
    std::printf("cmoe %s\n", CMOE_VERSION);
    return 0;
  }
  if (cmd == "info") return cmd_info();
  if (cmd == "params") return cmoe::cmd_params(argc, argv);
  if (cmd == "data") return cmoe::cmd_data(argc, argv);
  if (cmd == "train") return cmoe::cmd_train(argc, argv);
  if (cmd == "eval") return cmoe::cmd_eval(argc, argv);
  if (cmd == "tokenizer") return cmoe::cmd_tokenizer(argc, argv);
  if (cmd == "preprocess") return cmoe::cmd_preprocess(argc, argv);
  if (cmd == "export") return cmoe::cmd_export(argc, argv);
  if (cmd == "checkpoint") return cmoe::cmd_checkpoint(argc, argv);
  std::fprintf(stderr, "cmoe: unknown command '%s'\n\n%s", cmd.c_str(), kUsage);
  return 2;
}
