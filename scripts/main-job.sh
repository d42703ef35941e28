#!/usr/bin/env bash
# The main job: set up and build cmoe, build the embedded mini-Pile (Debian-packaged text ->
# tokenizer -> Megatron datasets), train the default small CartesianMoE (configs/cpu-small.
# textproto, about ten minutes on two cores) and report validation perplexity.
# Idempotent: finished stages are skipped; a finished run is not retrained (delete the run
# directory to start over); an interrupted run resumes from its latest checkpoint.
# Usage: scripts/main-job.sh [RUN_DIR] [cmoe train flags, e.g. --set train.steps=50]
#   RUN_DIR (default runs/cpu-small) is taken from the first argument only when it does not
#   start with '-'. Every --set override also goes to `cmoe eval`, so the evaluation builds the
#   model and reads the data the training did.
set -euo pipefail
cd "$(dirname "$0")/.."
run_dir=runs/cpu-small
if [[ $# -gt 0 && $1 != -* ]]; then
  run_dir=$1
  shift
fi
sets=()
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case ${args[i]} in
    --set) sets+=(--set "${args[i + 1]:-}"); i=$((i + 1)) ;;
    --set=*) sets+=("${args[i]}") ;;
  esac
done
bash scripts/build.sh
bash scripts/build-mini-pile.sh
build/bin/cmoe info
build/bin/cmoe params --config configs/cpu-small.textproto "${sets[@]}"
build/bin/cmoe train --config configs/cpu-small.textproto --run-dir "$run_dir" "$@"
echo
build/bin/cmoe eval --config configs/cpu-small.textproto --checkpoint "$run_dir/checkpoints" "${sets[@]}"
# The bar: a model that ignores context scores the unigram entropy of the corpus.
build/bin/cmoe data inspect data-cache/mini-pile/train_text_document --unigram | grep '^unigram' \
  | sed 's/^unigram: */main job: unigram entropy of the training corpus (the no-context baseline): /'
echo "main job: metrics in $run_dir/metrics.jsonl, checkpoints in $run_dir/checkpoints"
