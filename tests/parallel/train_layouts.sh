#!/usr/bin/env bash
# Layout equivalence through the cmoe binary: for a fixed global batch and seed, the per-step
# training losses of a (pp, dp, ep) job under mpirun equal the single-rank run's to 1e-5
# relative (f32, 10 steps), for cartesian and smoe. Global batch = micro_batch_size * dp *
# grad_accum; the single-rank reference runs micro_batch_size * dp with the same grad_accum.
# Also: a rank count that is not pp * dp is refused with both numbers named.
# Usage: train_layouts.sh CMOE MAKE_DATASET CONFIG MPIEXEC [MPIEXEC_FLAGS...]
set -euo pipefail
cmoe=$1 make_dataset=$2 config=$3 mpiexec=$4
shift 4
mpi_flags=("$@")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export OMP_NUM_THREADS=1
"$make_dataset" "$work/data" 512 300 7
micro=2 accum=2
common=(--config "$config" --set data.prefix="$work/data" --set train.steps=10 --set train.grad_accum=$accum
        --set train.lr=0.01 --set train.min_lr=0.001 --set train.warmup_steps=2
        --set train.eval_interval=1000 --set checkpoint.interval=0 --set train.precision=f32)
losses() { grep -o '"loss": [-0-9.e]*' "$1/metrics.jsonl" | sed 's/"loss": //'; }

fail=0
for kind in CARTESIAN SMOE; do
  kind_set=(--set model.moe.kind=$kind)
  for dp in 1 2 4; do
    "$cmoe" train "${common[@]}" "${kind_set[@]}" --set train.micro_batch_size=$((micro * dp)) \
      --run-dir "$work/ref_${kind}_$dp" > "$work/ref_${kind}_$dp.log"
  done
  for layout in "1 2 1" "1 2 2" "2 1 1" "1 4 2" "2 2 2"; do
    read -r pp dp ep <<< "$layout"
    n=$((pp * dp)) run="$work/${kind}_${pp}_${dp}_${ep}"
    if ! "$mpiexec" "${mpi_flags[@]}" -np $n "$cmoe" train "${common[@]}" "${kind_set[@]}" \
         --set train.micro_batch_size=$micro --set parallel.pp=$pp --set parallel.dp=$dp --set parallel.ep=$ep \
         --run-dir "$run" > "$run.log" 2>&1; then
      echo "FAIL: $kind (pp,dp,ep)=($pp,$dp,$ep) did not run:"; tail -20 "$run.log"; fail=1; continue
    fi
    ref="$work/ref_${kind}_$dp"
    if [ "$(losses "$run" | wc -l)" != 10 ]; then echo "FAIL: $kind ($pp,$dp,$ep): $(losses "$run" | wc -l) steps"; fail=1; continue; fi
    if ! worst=$(paste <(losses "$ref") <(losses "$run") | awk '
        { r = ($1 - $2) / $1; if (r < 0) r = -r; if (r > w) w = r }
        END { printf "%.2e", w; exit !(w <= 1e-5) }'); then
      echo "FAIL: $kind (pp,dp,ep)=($pp,$dp,$ep): losses differ from the single-rank run by $worst relative"
      paste <(losses "$ref") <(losses "$run"); fail=1; continue
    fi
    echo "ok: $kind (pp,dp,ep)=($pp,$dp,$ep) on $n ranks: 10 losses within $worst relative of one rank"
  done
done

# Resharding through a checkpoint: (2,2,2) trains 5 steps and saves (global tensors gathered to
# rank 0); one rank resumes it to step 10, and (1,2,2) resumes that one rank's checkpoint at
# step 5: both must reproduce the uninterrupted single-rank losses.
kind_set=(--set model.moe.kind=CARTESIAN)
ck_common=("${common[@]/checkpoint.interval=0/checkpoint.interval=5}")
"$mpiexec" "${mpi_flags[@]}" -np 4 "$cmoe" train "${ck_common[@]}" "${kind_set[@]}" --set train.micro_batch_size=$micro \
  --set parallel.pp=2 --set parallel.dp=2 --set parallel.ep=2 --set train.exit_at_step=5 --run-dir "$work/reshard" \
  > "$work/reshard1.log" 2>&1 || { echo "FAIL: (2,2,2) to step 5"; tail -20 "$work/reshard1.log"; fail=1; }
"$cmoe" train "${ck_common[@]}" "${kind_set[@]}" --set train.micro_batch_size=$((micro * 2)) --run-dir "$work/reshard" \
  > "$work/reshard2.log" 2>&1 || { echo "FAIL: one rank resuming (2,2,2)"; tail -20 "$work/reshard2.log"; fail=1; }
"$cmoe" train "${ck_common[@]}" "${kind_set[@]}" --set train.micro_batch_size=$((micro * 2)) --set train.exit_at_step=5 \
  --run-dir "$work/reshard_b" > "$work/reshard3.log" 2>&1 || { echo "FAIL: one rank to step 5"; fail=1; }
"$mpiexec" "${mpi_flags[@]}" -np 2 "$cmoe" train "${ck_common[@]}" "${kind_set[@]}" --set train.micro_batch_size=$micro \
  --set parallel.dp=2 --set parallel.ep=2 --run-dir "$work/reshard_b" > "$work/reshard4.log" 2>&1 \
  || { echo "FAIL: (1,2,2) resuming one rank's checkpoint"; tail -20 "$work/reshard4.log"; fail=1; }
for log in reshard2 reshard4; do
  grep -q "resuming from .*step_00000005 at step 5" "$work/$log.log" || { echo "FAIL: $log: no resume message"; fail=1; }
done
for r in reshard reshard_b; do
  if ! worst=$(paste <(losses "$work/ref_CARTESIAN_2") <(losses "$work/$r") | awk '
      { r = ($1 - $2) / $1; if (r < 0) r = -r; if (r > w) w = r; n++ }
      END { printf "%.2e", w; exit !(w <= 1e-5 && n == 10) }'); then
    echo "FAIL: $r: resumed losses differ from the single-rank run ($worst)"; paste <(losses "$work/ref_CARTESIAN_2") <(losses "$work/$r"); fail=1
  else
    echo "ok: $r: checkpoint resharded across layouts, 10 losses within $worst of one rank"
  fi
done

# 3 ranks for pp * dp = 4: refused, naming both numbers.
if "$mpiexec" "${mpi_flags[@]}" -np 3 "$cmoe" train "${common[@]}" --set parallel.dp=4 --run-dir "$work/bad" \
     > "$work/bad.log" 2>&1; then
  echo "FAIL: 3 ranks for pp * dp = 4 were accepted"; fail=1
elif ! grep -q "4" "$work/bad.log" || ! grep -q "3" "$work/bad.log"; then
  echo "FAIL: the mismatch message does not name both numbers:"; cat "$work/bad.log"; fail=1
else
  echo "ok: 3 ranks for pp * dp = 4 refused: $(grep -m1 -i "world\|ranks" "$work/bad.log")"
fi
exit $fail
