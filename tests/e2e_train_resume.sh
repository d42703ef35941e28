#!/usr/bin/env bash
# End-to-end: training through the cmoe binary on a generated Megatron dataset.
#  1. 16 steps straight;  2. exit_at_step=8, then a new process resumes to 16;  3. the same
#  with asynchronous checkpoints (checkpoint.async=true), and with SIGTERM instead of exit_at_step.
# The resumed runs' per-step losses must equal the straight run's bit for bit (f32, one
# rank), the loss must fall, eval must load the checkpoint, and a corrupted checkpoint must be
# refused with the tensor and file named. Usage: e2e_train_resume.sh CMOE MAKE_DATASET CONFIG
set -euo pipefail
cmoe=$1 make_dataset=$2 config=$3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$make_dataset" "$work/data" 512 300 7
common=(--config "$config" --set data.prefix="$work/data" --set train.steps=16 --set checkpoint.interval=4
        --set train.lr=0.01 --set train.min_lr=0.001
        --set train.eval_interval=8)

"$cmoe" train "${common[@]}" --run-dir "$work/straight" > "$work/straight.log"
"$cmoe" train "${common[@]}" --run-dir "$work/resumed" --set train.exit_at_step=8 > "$work/part1.log"
"$cmoe" train "${common[@]}" --run-dir "$work/resumed" > "$work/part2.log"
grep -q "resuming from .*step_00000008 at step 8" "$work/part2.log" || { echo "FAIL: no resume message"; cat "$work/part2.log"; exit 1; }

"$cmoe" train "${common[@]}" --run-dir "$work/async" --set checkpoint.async=true --set train.exit_at_step=8 > "$work/async1.log"
"$cmoe" train "${common[@]}" --run-dir "$work/async" --set checkpoint.async=true > "$work/async2.log"
grep -q "resuming from .*step_00000008 at step 8" "$work/async2.log" || { echo "FAIL: async: no resume message"; cat "$work/async2.log"; exit 1; }
[ "$(grep -c '^checkpoint: ' "$work/async2.log")" = 2 ] || { echo "FAIL: async: expected 2 committed checkpoints (12, 16)"; cat "$work/async2.log"; exit 1; }
# SIGTERM: the run stops at the next step boundary with a checkpoint; a new process resumes.
"$cmoe" train "${common[@]}" --set train.steps=400 --set train.eval_interval=1000 --run-dir "$work/term" > "$work/term1.log" &
pid=$!
for _ in $(seq 1 200); do grep -q '"step": 3,' "$work/term/metrics.jsonl" 2>/dev/null && break; sleep 0.05; done
kill -TERM $pid
wait $pid || { echo "FAIL: SIGTERM: exit status $?"; cat "$work/term1.log"; exit 1; }
grep -q "stopping at step .* on request (checkpoint saved)" "$work/term1.log" || { echo "FAIL: SIGTERM message"; cat "$work/term1.log"; exit 1; }
stopped=$(head -n1 "$work/term/checkpoints/latest")
"$cmoe" train "${common[@]}" --set train.steps=400 --set train.eval_interval=1000 --set train.exit_at_step=$((10#${stopped#step_} + 2)) \
  --run-dir "$work/term" > "$work/term2.log"
grep -q "resuming from .*$stopped" "$work/term2.log" || { echo "FAIL: SIGTERM resume"; cat "$work/term2.log"; exit 1; }

# Per-step losses, grad norms and lr, without timing fields.
extract() { grep '"loss"' "$1" | sed -E 's/"tokens_per_s"[^,]*,//; s/"mfu"[^,]*,//; s/"step_s"[^,]*,//; s/, "compute_s"[^}]*//'; }
for run in resumed async; do
  if ! diff <(extract "$work/straight/metrics.jsonl") <(extract "$work/$run/metrics.jsonl"); then
    echo "FAIL: $run: resumed losses differ from the uninterrupted run"
    exit 1
  fi
done
"$cmoe" train "${common[@]}" --set train.steps=400 --set train.eval_interval=1000 --set train.exit_at_step=$((10#${stopped#step_} + 2)) \
  --run-dir "$work/term_ref" > "$work/term_ref.log"
if ! diff <(extract "$work/term_ref/metrics.jsonl") <(extract "$work/term/metrics.jsonl"); then
  echo "FAIL: SIGTERM-stopped and resumed losses differ from the uninterrupted run"
  exit 1
fi
# (Files, not pipes into head/grep -q: with pipefail an early-closing reader fails the pipeline.)
extract "$work/straight/metrics.jsonl" > "$work/losses.txt"
first=$(sed -n '1s/.*"loss": \([0-9.]*\).*/\1/p' "$work/losses.txt")
last=$(sed -n '$s/.*"loss": \([0-9.]*\).*/\1/p' "$work/losses.txt")
awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < a - 0.3) }' || { echo "FAIL: loss did not fall ($first -> $last)"; exit 1; }

"$cmoe" eval "${common[@]}" --checkpoint "$work/straight/checkpoints" --json > "$work/eval.json"
grep -q '"step": 16' "$work/eval.json" || { echo "FAIL: eval did not load step 16"; cat "$work/eval.json"; exit 1; }

# Flip one byte in the newest checkpoint's tensor data: loading must fail and name the tensor.
ck="$work/straight/checkpoints/$(head -n1 "$work/straight/checkpoints/latest")"
printf '\xff' | dd of="$ck/shard_pp000_ep000.bin" bs=1 seek=100 conv=notrunc status=none
if "$cmoe" eval "${common[@]}" --checkpoint "$ck" > "$work/bad.log" 2>&1; then
  echo "FAIL: a corrupted checkpoint was accepted"
  exit 1
fi
grep -q "CRC-32C" "$work/bad.log" && grep -q "shard_pp000_ep000.bin tensor" "$work/bad.log" \
  || { echo "FAIL: corruption message does not name the tensor/file:"; cat "$work/bad.log"; exit 1; }
echo "e2e: resume exact over $(wc -l < "$work/losses.txt") steps (sync, async; SIGTERM at $stopped), loss $first -> $last"
