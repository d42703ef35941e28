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

# Checkpoints across layouts. (1,2,2) trains 5 steps and saves (each of its two ranks writes its
# own shard file, asynchronously); then:
#  - (1,2,2) resumes it to step 10: per-step records equal the uninterrupted (1,2,2) run bit for bit;
#  - (1,1,1), (2,1,1) and (1,4,4) resume it: losses equal the single-rank run's to 1e-5;
#  - `cmoe checkpoint reshard` rewrites it for (1,4,4) (four shard files) and (1,4,4) resumes that;
#  - (2,2,2) saves (one file per stage and expert rank) and one rank resumes it.
kind_set=(--set model.moe.kind=CARTESIAN)
ck_common=("${common[@]/checkpoint.interval=0/checkpoint.interval=5}")
run_layout() {  # run_layout NAME PP DP EP MICRO [args...]
  local name=$1 pp=$2 dp=$3 ep=$4 mb=$5
  shift 5
  local n=$((pp * dp))
  "$mpiexec" "${mpi_flags[@]}" -np $n "$cmoe" train "${ck_common[@]}" "${kind_set[@]}" --set train.micro_batch_size=$mb \
    --set parallel.pp=$pp --set parallel.dp=$dp --set parallel.ep=$ep "$@" > "$work/$name.log" 2>&1 \
    || { echo "FAIL: $name ($pp,$dp,$ep)"; tail -20 "$work/$name.log"; fail=1; return 1; }
}
seed_run() {  # seed_run DIR: a run directory whose latest is the (1,2,2) step-5 checkpoint
  mkdir -p "$1/checkpoints"
  cp -r "$work/ck122/checkpoints/step_00000005" "$1/checkpoints/"
  echo step_00000005 > "$1/checkpoints/latest"
}
record() { grep '"loss"' "$1/metrics.jsonl" | sed -E 's/"tokens_per_s"[^,]*,//; s/"mfu"[^,]*,//; s/"step_s"[^,]*,//; s/, "compute_s"[^}]*//'; }
run_layout ck122 1 2 2 $micro --set train.exit_at_step=5 --set checkpoint.async=true --run-dir "$work/ck122"
files=$(cd "$work/ck122/checkpoints/step_00000005" && ls shard_*.bin | tr '\n' ' ')
[ "$files" = "shard_pp000_ep000.bin shard_pp000_ep001.bin " ] || { echo "FAIL: (1,2,2) wrote: $files"; fail=1; }
seed_run "$work/re122"
run_layout re122 1 2 2 $micro --run-dir "$work/re122"
if diff <(record "$work/CARTESIAN_1_2_2" | tail -5) <(record "$work/re122") > /dev/null; then
  echo "ok: (1,2,2) saved at step 5 and resumed by (1,2,2) in new processes: steps 6-10 bit for bit"
else
  echo "FAIL: (1,2,2) resume is not exact"; diff <(record "$work/CARTESIAN_1_2_2" | tail -5) <(record "$work/re122"); fail=1
fi
seed_run "$work/re111"
"$cmoe" train "${ck_common[@]}" "${kind_set[@]}" --set train.micro_batch_size=$((micro * 2)) --run-dir "$work/re111" \
  > "$work/re111.log" 2>&1 || { echo "FAIL: one rank resuming (1,2,2)"; tail -20 "$work/re111.log"; fail=1; }
seed_run "$work/re211"
run_layout re211 2 1 1 $((micro * 2)) --run-dir "$work/re211"
seed_run "$work/re144"
run_layout re144 1 4 4 $((micro / 2)) --run-dir "$work/re144"
"$cmoe" checkpoint reshard "$work/ck122/checkpoints" --out "$work/rs144/checkpoints" --set parallel.dp=4 --set parallel.ep=4 \
  > "$work/rs144.reshard.log" 2>&1 || { echo "FAIL: checkpoint reshard"; cat "$work/rs144.reshard.log"; fail=1; }
files=$(cd "$work/rs144/checkpoints/step_00000005" && ls shard_*.bin | wc -l)
[ "$files" = 4 ] || { echo "FAIL: reshard for (1,4,4) wrote $files shard files"; fail=1; }
run_layout rs144 1 4 4 $((micro / 2)) --run-dir "$work/rs144"
run_layout ck222 2 2 2 $micro --set train.exit_at_step=5 --run-dir "$work/ck222"
files=$(cd "$work/ck222/checkpoints/step_00000005" && ls shard_*.bin | tr '\n' ' ')
[ "$files" = "shard_pp000_ep000.bin shard_pp000_ep001.bin shard_pp001_ep000.bin shard_pp001_ep001.bin " ] \
  || { echo "FAIL: (2,2,2) wrote: $files"; fail=1; }
"$cmoe" train "${ck_common[@]}" "${kind_set[@]}" --set train.micro_batch_size=$((micro * 2)) --run-dir "$work/ck222" \
  > "$work/re222.log" 2>&1 || { echo "FAIL: one rank resuming (2,2,2)"; tail -20 "$work/re222.log"; fail=1; }
for r in re111 re211 re144 rs144 ck222; do
  log="$work/$r.log"
  [ "$r" = ck222 ] && log="$work/re222.log"
  grep -q "resuming from .*step_00000005 at step 5" "$log" || { echo "FAIL: $r: no resume message"; fail=1; }
  if ! worst=$(paste <(losses "$work/ref_CARTESIAN_2" | tail -5) <(losses "$work/$r" | tail -5) | awk '
      { r = ($1 - $2) / $1; if (r < 0) r = -r; if (r > w) w = r; n++ }
      END { printf "%.2e", w; exit !(w <= 1e-5 && n == 5) }'); then
    echo "FAIL: $r: resumed losses differ from the single-rank run ($worst)"; paste <(losses "$work/ref_CARTESIAN_2") <(losses "$work/$r"); fail=1
  else
    echo "ok: $r: checkpoint resumed across layouts, steps 6-10 within $worst of one rank"
  fi
done

# The distributed optimizer (ZeRO-1: gradients reduce-scattered, each parameter's AdamW state on
# one rank of its group, values all-gathered): the same losses as one rank in (1,2,2), (1,4,2)
# and (2,2,2); its checkpoint (one file per dp rank) resumes bit for bit under itself and to
# 1e-5 on one rank without it.
zero=(--set parallel.distributed_optimizer=true)
for layout in "1 2 2" "1 4 2" "2 2 2"; do
  read -r pp dp ep <<< "$layout"
  name="zero_${pp}_${dp}_${ep}"
  run_layout "$name" $pp $dp $ep $micro "${zero[@]}" --set checkpoint.interval=0 --run-dir "$work/$name" || continue
  grep -q "distributed optimizer (ZeRO-1)" "$work/$name.log" || { echo "FAIL: $name: ZeRO-1 not in use"; fail=1; }
  if ! worst=$(paste <(losses "$work/ref_CARTESIAN_$dp") <(losses "$work/$name") | awk '
      { r = ($1 - $2) / $1; if (r < 0) r = -r; if (r > w) w = r; n++ }
      END { printf "%.2e", w; exit !(w <= 1e-5 && n == 10) }'); then
    echo "FAIL: ZeRO-1 ($pp,$dp,$ep): losses differ from the single-rank run by $worst"; fail=1
  else
    echo "ok: ZeRO-1 (pp,dp,ep)=($pp,$dp,$ep): 10 losses within $worst relative of one rank"
  fi
done
run_layout zck 1 2 2 $micro "${zero[@]}" --set train.exit_at_step=5 --run-dir "$work/zck"
files=$(cd "$work/zck/checkpoints/step_00000005" && ls shard_*.bin | tr '\n' ' ')
[ "$files" = "shard_pp000_dp000.bin shard_pp000_dp001.bin " ] || { echo "FAIL: ZeRO-1 (1,2,2) wrote: $files"; fail=1; }
"$cmoe" checkpoint verify "$work/zck/checkpoints" > /dev/null || { echo "FAIL: ZeRO-1 checkpoint does not verify"; fail=1; }
mkdir -p "$work/zre111/checkpoints" && cp -r "$work/zck/checkpoints/step_00000005" "$work/zre111/checkpoints/" \
  && echo step_00000005 > "$work/zre111/checkpoints/latest"
run_layout zck 1 2 2 $micro "${zero[@]}" --run-dir "$work/zck"
if diff <(record "$work/zero_1_2_2") <(record "$work/zck") > /dev/null; then
  echo "ok: ZeRO-1 (1,2,2) saved at step 5 and resumed by itself: 10 steps bit for bit"
else
  echo "FAIL: ZeRO-1 (1,2,2) resume is not exact"; diff <(record "$work/zero_1_2_2") <(record "$work/zck"); fail=1
fi
"$cmoe" train "${ck_common[@]}" "${kind_set[@]}" --set train.micro_batch_size=$((micro * 2)) --run-dir "$work/zre111" \
  > "$work/zre111.log" 2>&1 || { echo "FAIL: one rank resuming a ZeRO-1 checkpoint"; tail -20 "$work/zre111.log"; fail=1; }
if ! worst=$(paste <(losses "$work/ref_CARTESIAN_2" | tail -5) <(losses "$work/zre111" | tail -5) | awk '
    { r = ($1 - $2) / $1; if (r < 0) r = -r; if (r > w) w = r; n++ }
    END { printf "%.2e", w; exit !(w <= 1e-5 && n == 5) }'); then
  echo "FAIL: one rank resuming ZeRO-1's checkpoint: $worst"; fail=1
else
  echo "ok: one rank (no ZeRO-1) resumed ZeRO-1's checkpoint: steps 6-10 within $worst of one rank"
fi

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
