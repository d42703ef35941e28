#!/usr/bin/env bash
# A refused `cmoe train` changes nothing in its run directory (issue: a refused resume used to
# overwrite config.textproto with the refused config). Each refusal must exit 1 with its
# reason and leave config.textproto, metrics.jsonl and checkpoints/ byte for byte as they
# were, and `cmoe eval --config RUN/config.textproto` must still load the checkpoints:
#  - resuming with a model config that differs from the checkpoint's;
#  - resuming from a damaged checkpoint (a flipped byte in a shard);
#  - `latest` naming a step directory that does not exist;
#  - a rank count that does not match the layout;
#  - --resume naming a directory that is not a checkpoint.
# Also: `checkpoint verify` refuses a checkpoint whose manifest names a tensor the saved
# config's model does not have, as a resume does.
# Usage: refused_run_test.sh CMOE MAKE_DATASET CONFIG
set -euo pipefail
cmoe=$1 make_dataset=$2 config=$3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

"$make_dataset" "$work/data" 512 200 5
common=(--config "$config" --set data.prefix="$work/data" --set train.steps=4 --set checkpoint.interval=2
        --set train.eval_interval=100)
"$cmoe" train "${common[@]}" --run-dir "$work/run" > "$work/train.log"
snapshot() { (cd "$work/run" && find . -type f | sort | xargs sha256sum) > "$1"; }
snapshot "$work/before"

refused() {  # refused NAME EXPECTED_MESSAGE_REGEX [train args...]
  local name=$1 regex=$2
  shift 2
  set +e
  "$cmoe" train "$@" > "$work/$name.out" 2> "$work/$name.err"
  local rc=$?
  set -e
  [ $rc = 1 ] || { cat "$work/$name.out" "$work/$name.err"; fail "$name: exit $rc, want 1"; }
  grep -Eq "$regex" "$work/$name.err" || { cat "$work/$name.err"; fail "$name: message does not match /$regex/"; }
  snapshot "$work/after_$name"
  diff "$work/before" "$work/after_$name" > /dev/null || { diff "$work/before" "$work/after_$name"; fail "$name: the run directory changed"; }
  echo "ok: $name refused and the run directory is unchanged"
}

refused differing_config "the checkpoint's model config differs from this run's" "${common[@]}" --set model.d_model=32 \
  --set train.steps=6 --run-dir "$work/run"

cp -a "$work/run" "$work/run.good"
ck="$work/run/checkpoints/step_00000004"
printf '\x55' | dd of="$ck/shard_pp000_ep000.bin" bs=1 seek=200 count=1 conv=notrunc status=none
snapshot "$work/before"
refused damaged_checkpoint "CRC" "${common[@]}" --set train.steps=6 --run-dir "$work/run"
rm -rf "$work/run" && cp -a "$work/run.good" "$work/run"

echo step_00000099 > "$work/run/checkpoints/latest"
snapshot "$work/before"
refused latest_nowhere "step_00000099" "${common[@]}" --set train.steps=6 --run-dir "$work/run"
rm -rf "$work/run" && cp -a "$work/run.good" "$work/run"

snapshot "$work/before"
refused wrong_rank_count "start the ranks with mpirun" "${common[@]}" --set parallel.dp=2 --set train.steps=6 \
  --run-dir "$work/run"
refused resume_not_a_checkpoint "manifest" "${common[@]}" --set train.steps=6 --resume "$work/data.bin" --run-dir "$work/run"

# The run directory's config still describes its checkpoints.
"$cmoe" eval --config "$work/run/config.textproto" --checkpoint "$work/run/checkpoints" > "$work/eval.log" \
  || { cat "$work/eval.log"; fail "eval with the run's config.textproto"; }

# verify checks what a resume checks: a tensor renamed inside the manifest is refused by both.
python3 - "$work/run/checkpoints/step_00000004/manifest.pb" <<'PY'
import sys
p = sys.argv[1]
b = open(p, "rb").read()
old = b"layers.0.moeA.router"
assert old in b, "tensor name not found in the manifest"
open(p, "wb").write(b.replace(old, b"layers.0.moeA.rooter", 1))
PY
set +e
"$cmoe" checkpoint verify "$work/run/checkpoints" > "$work/verify.out" 2>&1
rc=$?
set -e
[ $rc = 1 ] || { cat "$work/verify.out"; fail "verify accepted a renamed tensor (exit $rc)"; }
grep -Eq "no tensor layers.0.moeA.router|manifest" "$work/verify.out" || { cat "$work/verify.out"; fail "verify: message"; }
echo "ok: verify refuses a renamed tensor"
echo "PASS"
