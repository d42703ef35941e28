#!/usr/bin/env bash
# Restarts leave clean records: a run killed with SIGKILL after its checkpoint at step 3 and three
# more steps (the CMOE_CHECKPOINT_CRASH hook kills it while saving step 6), with a torn last line
# added as a crash mid-write would leave, then resumed from step 3: metrics.jsonl holds exactly
# one step record per step, one validation record per validation and one checkpoint record per
# checkpoint, every line valid JSON, equal (timing fields aside) to an uninterrupted run's.
# A fresh start in a run directory without checkpoints drops the old records too.
# Usage: e2e_metrics_restart.sh CMOE MAKE_DATASET CONFIG
set -euo pipefail
cmoe=$1 make_dataset=$2 config=$3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export OMP_NUM_THREADS=1
fail() { echo "FAIL: $*"; exit 1; }
"$make_dataset" "$work/data" 512 200 7
common=(--config "$config" --set data.prefix="$work/data" --set train.steps=9 --set checkpoint.interval=3
        --set train.eval_interval=2 --set train.lr=0.01 --set train.micro_batch_size=2)
# Records without their timing fields (the same on every run of a deterministic config).
records() {
  sed -E 's/"tokens_per_s"[^,]*, //; s/"mfu"[^,]*, //; s/"step_s"[^,]*, //; s/, "ckpt_s": [0-9.]+//;
          s/, "(compute_s|comm_wait_s|data_wait_s)": [0-9.]+//g' "$1"
}

"$cmoe" train "${common[@]}" --run-dir "$work/straight" > "$work/straight.log"
rc=0
# (In a subshell whose stderr goes to the log: the shell's "Killed" notice is expected.)
(CMOE_CHECKPOINT_CRASH=shard_data:6 "$cmoe" train "${common[@]}" --run-dir "$work/crash"; exit $?) > "$work/crash1.log" 2>&1 || rc=$?
[ "$rc" = 137 ] || { cat "$work/crash1.log"; fail "expected death by SIGKILL (137), got $rc"; }
[ "$(head -n1 "$work/crash/checkpoints/latest")" = step_00000003 ] || fail "latest is not step 3"
[ "$(grep -c '"loss"' "$work/crash/metrics.jsonl")" = 6 ] || fail "the killed run should have logged steps 1-6"
printf '{"step": 7, "loss": 1.23' >> "$work/crash/metrics.jsonl"  # torn by the crash
cp "$work/crash/metrics.jsonl" "$work/before_resume.jsonl"

# A run that cannot start (bad layout) changes nothing in the run directory.
if "$cmoe" train "${common[@]}" --set parallel.dp=2 --run-dir "$work/crash" > /dev/null 2>&1; then
  fail "a dp = 2 config started on one process"
fi
cmp -s "$work/crash/metrics.jsonl" "$work/before_resume.jsonl" || fail "a run that did not start changed metrics.jsonl"

"$cmoe" train "${common[@]}" --run-dir "$work/crash" > "$work/crash2.log" 2>&1 || { cat "$work/crash2.log"; fail "resume"; }
grep -q "resuming from .*step_00000003 at step 3" "$work/crash2.log" || fail "did not resume from step 3"
# (tiny logs every step, so routing records come every step too: train.routing_stats_interval.)
grep -q "metrics: dropped 8 records past step 3" "$work/crash2.log" \
  || fail "expected 8 dropped records (steps 4-6, their routing records, validation at 4, the torn line): $(grep metrics "$work/crash2.log")"
python3 - "$work/crash/metrics.jsonl" <<'EOF' || fail "metrics.jsonl is not clean"
import json, sys
recs = [json.loads(line) for line in open(sys.argv[1])]
steps = [r["step"] for r in recs if "loss" in r]
evals = [r["step"] for r in recs if "val_loss" in r]
ckpts = [r["step"] for r in recs if "ckpt_s" in r]
routing = [r["step"] for r in recs if "routing" in r]
assert steps == list(range(1, 10)), steps
assert routing == list(range(1, 10)), routing
assert evals == [2, 4, 6, 8, 9], evals
assert ckpts == [3, 6, 9], ckpts
EOF
diff <(records "$work/straight/metrics.jsonl") <(records "$work/crash/metrics.jsonl") \
  || fail "the resumed run's records differ from the uninterrupted run's"
echo "ok: killed at step 6 after the step-3 checkpoint, resumed: one record per step, validation and checkpoint, equal to the uninterrupted run"

# No checkpoint to resume: a fresh start supersedes every old record.
mkdir -p "$work/fresh"
cp "$work/before_resume.jsonl" "$work/fresh/metrics.jsonl"
"$cmoe" train "${common[@]}" --set train.steps=2 --set train.eval_interval=1000 --run-dir "$work/fresh" > "$work/fresh.log"
python3 - "$work/fresh/metrics.jsonl" <<'EOF' || fail "fresh start: $(cat "$work/fresh/metrics.jsonl")"
import json, sys
recs = [json.loads(line) for line in open(sys.argv[1])]
assert [r["step"] for r in recs if "loss" in r] == [1, 2]
assert all(r["step"] <= 2 for r in recs)
EOF
echo "ok: a fresh start in a run directory without checkpoints keeps no old record"
