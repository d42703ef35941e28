#!/usr/bin/env bash
# startup_bench.sh — how long cmoe commands take to start: `cmoe version`, `cmoe info`, and
# `cmoe tokenizer encode` of a small (1.7 KB) and a 35 KB file, each fork/exec'd RUNS times by
# build/bin/exec_timer (median, p90 and min wall time; median CPU time and minor page faults).
#
#   bench/startup_bench.sh [RUNS] [CMOE_BINARY...]
# Default binary: build/bin/cmoe. Give several binaries to compare builds (e.g. an older build's
# bin/cmoe); each gets its own table. Needs: ninja -C build cmoe exec_timer.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
runs=${1:-30}
shift || true
bins=("$@")
((${#bins[@]} > 0)) || bins=("$root/build/bin/cmoe")
timer=$root/build/bin/exec_timer
[[ -x $timer ]] || { echo "startup_bench: $timer missing (ninja -C build exec_timer)"; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tok=$root/tests/data/gpt2_subset.tokenizer.json
small=$root/tests/data/tokenizer_corpus.txt
# 35 KB of English text from the repository itself (the docs), the same bytes on every run.
head -c 35000 <(cat "$root"/docs/*.md) > "$work/35k.txt"
echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores, load average $(cut -d' ' -f1 /proc/loadavg)"
echo "runs: $runs (after 3 warm-up runs); times in ms"
for bin in "${bins[@]}"; do
  echo "--- $bin"
  printf '%-44s %8s %8s %8s %8s %8s\n' command median p90 min cpu minflt
  "$timer" --runs "$runs" --label "cmoe version" -- "$bin" version
  "$timer" --runs "$runs" --label "cmoe info" -- "$bin" info
  "$timer" --runs "$runs" --label "cmoe tokenizer encode (1.7 KB)" -- \
    "$bin" tokenizer encode --tokenizer "$tok" --input "$small"
  "$timer" --runs "$runs" --label "cmoe tokenizer encode (35 KB)" -- \
    "$bin" tokenizer encode --tokenizer "$tok" --input "$work/35k.txt"
done
