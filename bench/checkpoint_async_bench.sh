#!/usr/bin/env bash
# checkpoint_async_bench.sh — what checkpointing costs a training run: cpu-small on the mini-Pile
# trained STEPS steps three times in a row, with no checkpoint before the end, with synchronous
# checkpoints every INTERVAL steps, and with asynchronous ones (checkpoint.async=true), then
#
#   time(mode) = sum over steps 1 .. STEPS-1 of (step_s + ckpt_s)
#                (metrics.jsonl: step records' step_s, checkpoint records' ckpt_s)
#   slowdown(mode) = time(mode) / time(none) - 1
#
# The last step is left out of every sum (all three modes save there). step_s is the step
# itself (an asynchronous save's writer thread competes with it for the cores); ckpt_s is the
# time the loop spends at the step boundary on checkpoints (sync: the whole save; async: the
# snapshot to host memory, and the commit once the writer is done).
#
# usage: bench/checkpoint_async_bench.sh [BUILD_DIR] [STEPS] [INTERVAL]   (defaults: build 40 10)
# Run it on an idle machine: other work on the cores shows up as noise in step_s.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
steps=${2:-40}
interval=${3:-10}
python=/usr/bin/python3
[[ -x "$build/bin/cmoe" ]] || { echo "checkpoint_async_bench: build $build/bin/cmoe first" >&2; exit 1; }
[[ -e data-cache/mini-pile/train_text_document.bin ]] || scripts/build-mini-pile.sh
work=$(mktemp -d "${TMPDIR:-/tmp}/cmoe-ckbench.XXXXXX")
trap 'rm -rf "$work"' EXIT
echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg); checkpoint dir on $(df -h "$work" | tail -1 | awk '{print $1}')"
common=(--config configs/cpu-small.textproto --set train.steps="$steps" --set train.eval_interval=100000
        --set train.log_interval=100000 --set train.warmup_steps=5)
for mode in none sync async; do
  case $mode in
    none) extra=(--set checkpoint.interval=0) ;;
    sync) extra=(--set checkpoint.interval="$interval") ;;
    async) extra=(--set checkpoint.interval="$interval" --set checkpoint.async=true) ;;
  esac
  echo "$mode ..." >&2
  OMP_NUM_THREADS=2 "$build/bin/cmoe" train "${common[@]}" "${extra[@]}" --run-dir "$work/$mode" > "$work/$mode.log"
done
du -sh "$work/sync/checkpoints/$(cat "$work/sync/checkpoints/latest")" | awk '{print "checkpoint size: " $1}'
"$python" - "$work" "$steps" "$interval" <<'PY'
import json, sys
work, steps, interval = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def load(mode):
    recs = [json.loads(l) for l in open(f"{work}/{mode}/metrics.jsonl")]
    return [dict(r, ckpt_s=r.get("ckpt_s", 0.0), step_s=r.get("step_s", 0.0)) for r in recs
            if r["step"] < steps and ("loss" in r or "ckpt_s" in r)]
runs = {m: load(m) for m in ("none", "sync", "async")}
total = {m: sum(r["step_s"] + r["ckpt_s"] for r in rs) for m, rs in runs.items()}
saves = [s for s in range(interval, steps, interval)]
print(f"{steps - 1} steps, checkpoints at steps {saves} (plus the final one, not counted)")
print(f"{'mode':6} {'time_s':>8} {'step_s sum':>10} {'ckpt_s sum':>10} {'ckpt_s/save':>11} {'slowdown':>9}")
for m, rs in runs.items():
    st = sum(r["step_s"] for r in rs)
    ck = sum(r["ckpt_s"] for r in rs)
    per = ck / len(saves) if m != "none" and saves else 0.0
    print(f"{m:6} {total[m]:8.2f} {st:10.2f} {ck:10.3f} {per:11.3f} {100 * (total[m] / total['none'] - 1):8.2f}%")
print(json.dumps({"bench": "checkpoint_async", "steps": steps, "interval": interval,
                  **{f"slowdown_{m}": total[m] / total["none"] - 1 for m in ("sync", "async")}}))
PY
