#!/usr/bin/env bash
# checkpoint_async_bench.sh — what checkpointing costs a training run: cpu-small on the mini-Pile
# trained STEPS steps three times in a row, with no checkpoint before the end, with synchronous
# checkpoints every INTERVAL steps, and with asynchronous ones (checkpoint.async=true), then
#
#   time(mode) = sum over steps 2 .. STEPS-1 of (step_s + ckpt_s)
#                (metrics.jsonl: step records' step_s, checkpoint records' ckpt_s)
#   vs none    = time(mode) / time(none) - 1
#   in-run     = time(mode) / (median step_s of the same run * steps) - 1
#
# "vs none" compares separate processes, whose step times drift by a few percent on this
# machine; "in-run" compares a run with itself (none's in-run figure is the noise floor). Step
# 1 (warm-up) and the last step (all three modes save there) are left out. step_s is the step
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
du -sh "$work/sync/checkpoints/$(head -n1 "$work/sync/checkpoints/latest")" | awk '{print "checkpoint size: " $1}'
"$python" - "$work" "$steps" "$interval" <<'PY'
import json, statistics, sys
work, steps, interval = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def load(mode):
    recs = [json.loads(l) for l in open(f"{work}/{mode}/metrics.jsonl")]
    step_s = {r["step"]: r["step_s"] for r in recs if "loss" in r and 1 < r["step"] < steps}
    ckpt_s = {r["step"]: r["ckpt_s"] for r in recs if "ckpt_s" in r and r["step"] < steps}
    return step_s, ckpt_s
runs = {m: load(m) for m in ("none", "sync", "async")}
saves = list(range(interval, steps, interval))
print(f"steps 2..{steps - 1} (step 1 warms up; the last step's save is in every mode), checkpoints at {saves}")
print(f"{'mode':6} {'time_s':>8} {'step_s sum':>10} {'ckpt_s sum':>10} {'ckpt_s/save':>11} {'vs none':>8} {'in-run':>8}")
out = {}
base = sum(runs["none"][0].values())
for m, (st, ck) in runs.items():
    total = sum(st.values()) + sum(ck.values())
    # In-run: against this run's own median step time, so drift between runs cancels.
    inrun = total / (statistics.median(st.values()) * len(st)) - 1
    per = sum(ck.values()) / len(saves) if m != "none" and saves else 0.0
    out[m] = (total / base - 1, inrun)
    print(f"{m:6} {total:8.2f} {sum(st.values()):10.2f} {sum(ck.values()):10.3f} {per:11.3f} {100 * out[m][0]:7.2f}% "
          f"{100 * inrun:7.2f}%")
print(json.dumps({"bench": "checkpoint_async", "steps": steps, "interval": interval,
                  **{f"slowdown_{m}": out[m][0] for m in ("sync", "async")},
                  **{f"inrun_slowdown_{m}": out[m][1] for m in ("none", "sync", "async")}}))
PY
