#!/usr/bin/env bash
# End-to-end: training through the cmoe binary on a generated Megatron dataset.
#  1. 16 steps straight;  2. exit_at_step=8, then a new process resumes to 16.
# The resumed run's per-step losses must equal the straight run's bit for bit (f32, one
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

# Per-step losses, grad norms and lr, without timing fields.
extract() { grep '"loss"' "$1" | sed -E 's/"tokens_per_s"[^,]*,//; s/"mfu"[^,]*,//; s/"step_s"[^,]*,//'; }
if ! diff <(extract "$work/straight/metrics.jsonl") <(extract "$work/resumed/metrics.jsonl"); then
  echo "FAIL: resumed losses differ from the uninterrupted run"
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
ck="$work/straight/checkpoints/$(cat "$work/straight/checkpoints/latest")"
printf '\xff' | dd of="$ck/tensors.bin" bs=1 seek=100 conv=notrunc status=none
if "$cmoe" eval "${common[@]}" --checkpoint "$ck" > "$work/bad.log" 2>&1; then
  echo "FAIL: a corrupted checkpoint was accepted"
  exit 1
fi
grep -q "CRC-32C" "$work/bad.log" && grep -q "tensors.bin tensor" "$work/bad.log" \
  || { echo "FAIL: corruption message does not name the tensor/file:"; cat "$work/bad.log"; exit 1; }
echo "e2e: resume exact over $(wc -l < "$work/losses.txt") steps, loss $first -> $last"
