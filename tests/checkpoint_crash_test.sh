#!/usr/bin/env bash
# Crash safety: a process killed with SIGKILL at any point of a checkpoint save leaves the
# previous checkpoint `latest` and loadable, never a partial one, and resuming from what is
# there reproduces the uninterrupted run's losses bit for bit.
#
# The kill comes from the CMOE_CHECKPOINT_CRASH=POINT:STEP[:RANK] hook (docs/checkpoint-format.md)
# at each point of the save of step 4 (checkpoints every 2 steps): half-way through writing a
# shard file, before the manifest, after the rename but before `latest`, and after `latest`.
# Synchronous and asynchronous saves on one rank, and a (1,2,2) job whose rank 1 dies
# half-way through its shard.
# Usage: checkpoint_crash_test.sh CMOE MAKE_DATASET CONFIG MPIEXEC [MPIEXEC_FLAGS...]
set -euo pipefail
cmoe=$1 make_dataset=$2 config=$3 mpiexec=$4
shift 4
mpi_flags=("$@")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export OMP_NUM_THREADS=1
fail() { echo "FAIL: $*"; exit 1; }
"$make_dataset" "$work/data" 512 300 7
common=(--config "$config" --set data.prefix="$work/data" --set train.steps=8 --set checkpoint.interval=2
        --set train.eval_interval=1000 --set train.lr=0.01 --set train.micro_batch_size=2)
extract() { grep '"loss"' "$1" | sed -E 's/"tokens_per_s"[^,]*,//; s/"mfu"[^,]*,//; s/"step_s"[^,]*,//; s/, "compute_s"[^}]*//'; }

"$cmoe" train "${common[@]}" --run-dir "$work/straight" > "$work/straight.log"
"$mpiexec" "${mpi_flags[@]}" -np 2 "$cmoe" train "${common[@]}" --set train.micro_batch_size=1 --set parallel.dp=2 \
  --set parallel.ep=2 --run-dir "$work/straight_mpi" > "$work/straight_mpi.log" 2>&1 || fail "(1,2,2) straight run"

# crash NAME POINT EXPECTED_LATEST [extra train args]: run until killed, check, resume, compare.
crash() {
  local name=$1 point=$2 want=$3 rc=0
  shift 3
  local run="$work/$name"
  CMOE_CHECKPOINT_CRASH="$point:4" "$cmoe" train "${common[@]}" "$@" --run-dir "$run" > "$run.1.log" 2>&1 || rc=$?
  [ "$rc" = 137 ] || { cat "$run.1.log"; fail "$name: expected death by SIGKILL (137), got $rc"; }
  grep -q "CMOE_CHECKPOINT_CRASH: killing this process at $point of step 4" "$run.1.log" || fail "$name: hook did not fire"
  [ "$(head -n1 "$run/checkpoints/latest")" = "$want" ] || fail "$name: latest is $(head -n1 "$run/checkpoints/latest"), expected $want"
  "$cmoe" checkpoint verify "$run/checkpoints" > "$run.verify.log" || { cat "$run.verify.log"; fail "$name: latest not loadable"; }
  "$cmoe" train "${common[@]}" "$@" --run-dir "$run" > "$run.2.log" 2>&1 || { cat "$run.2.log"; fail "$name: resume"; }
  grep -q "resuming from .*$want" "$run.2.log" || fail "$name: did not resume from $want"
  # The first process logged steps past the checkpoint it left; the resumed run dropped those
  # records (docs/metrics.md), so each step has exactly one line.
  extract "$run/metrics.jsonl" > "$run.losses"
  diff <(extract "$work/straight/metrics.jsonl") "$run.losses" > /dev/null \
    || { diff <(extract "$work/straight/metrics.jsonl") "$run.losses" | head; fail "$name: losses after resume differ"; }
  echo "ok: $name: killed at $point of step 4, latest $want verified, resumed to step 8 bit for bit"
}

crash sync_shard_data shard_data step_00000002
crash sync_manifest manifest step_00000002
crash sync_rename rename step_00000002
crash sync_latest latest step_00000004
crash async_shard_data shard_data step_00000002 --set checkpoint.async=true
crash async_manifest manifest step_00000002 --set checkpoint.async=true

# (1,2,2): world rank 1 dies half-way through its shard of step 4; the launcher ends the job.
rc=0
CMOE_CHECKPOINT_CRASH=shard_data:4:1 "$mpiexec" "${mpi_flags[@]}" -np 2 "$cmoe" train "${common[@]}" \
  --set train.micro_batch_size=1 --set parallel.dp=2 --set parallel.ep=2 --run-dir "$work/mpi" > "$work/mpi.1.log" 2>&1 || rc=$?
[ "$rc" != 0 ] || fail "(1,2,2): the job survived a killed rank"
grep -q "killing this process at shard_data of step 4" "$work/mpi.1.log" || { cat "$work/mpi.1.log"; fail "(1,2,2): hook did not fire"; }
[ "$(head -n1 "$work/mpi/checkpoints/latest")" = step_00000002 ] || fail "(1,2,2): latest is $(head -n1 "$work/mpi/checkpoints/latest")"
[ ! -e "$work/mpi/checkpoints/step_00000004" ] || fail "(1,2,2): a partial step_00000004 was renamed into place"
"$cmoe" checkpoint verify "$work/mpi/checkpoints" > /dev/null || fail "(1,2,2): latest not loadable"
"$mpiexec" "${mpi_flags[@]}" -np 2 "$cmoe" train "${common[@]}" --set train.micro_batch_size=1 --set parallel.dp=2 \
  --set parallel.ep=2 --run-dir "$work/mpi" > "$work/mpi.2.log" 2>&1 || { cat "$work/mpi.2.log"; fail "(1,2,2): resume"; }
extract "$work/mpi/metrics.jsonl" > "$work/mpi.losses"
diff <(extract "$work/straight_mpi/metrics.jsonl") "$work/mpi.losses" > /dev/null || fail "(1,2,2): losses after resume differ"
echo "ok: (1,2,2) with rank 1 killed mid-shard: job ended (exit $rc), step 2 still latest, resumed bit for bit"
