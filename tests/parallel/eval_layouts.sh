#!/usr/bin/env bash
# `cmoe eval` under mpirun: a checkpoint's validation loss under (pp, dp, ep) layouts equals the
# single-rank loss on the same validation samples to 1e-5 relative. The validation batches split
# over dp as in training (train.micro_batch_size sequences per rank and batch), so the
# single-rank reference reads micro_batch_size * dp. Layouts: dp 2 by default (no parallel.*
# set: every rank data-parallel), (1,2,2), (2,1,1), (2,2,2), and (1,2,2) with --disable-top1.
# A rank count that does not match the config's layout is refused naming both.
# Usage: eval_layouts.sh CMOE MAKE_DATASET CONFIG MPIEXEC [MPIEXEC_FLAGS...]
set -euo pipefail
cmoe=$1 make_dataset=$2 config=$3 mpiexec=$4
shift 4
mpi_flags=("$@")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export OMP_NUM_THREADS=1
fail=0
"$make_dataset" "$work/data" 512 200 7
micro=2
common=(--config "$config" --set data.prefix="$work/data" --set train.precision=f32 --set train.eval_batches=2)
"$cmoe" train "${common[@]}" --set train.steps=4 --set train.lr=0.01 --set checkpoint.interval=4 \
  --set train.eval_interval=1000 --run-dir "$work/run" > "$work/train.log"
ck="$work/run/checkpoints"
val() { sed -E 's/.*"val_loss": ([0-9.]+).*/\1/' "$1"; }
for dp in 1 2; do
  for flag in "" --disable-top1; do
    "$cmoe" eval "${common[@]}" --set train.micro_batch_size=$((micro * dp)) --checkpoint "$ck" $flag --json \
      > "$work/ref_${dp}${flag}.json"
  done
done

# name NP DP DISABLE_TOP1 [--set ...]: runs `cmoe eval` on NP ranks, compares with the dp reference.
check() {
  local name=$1 np=$2 dp=$3 flag=$4
  shift 4
  if ! "$mpiexec" "${mpi_flags[@]}" -np "$np" "$cmoe" eval "${common[@]}" --set train.micro_batch_size=$micro "$@" \
       --checkpoint "$ck" $flag --json > "$work/$name.json" 2> "$work/$name.err"; then
    echo "FAIL: $name did not run:"; tail -20 "$work/$name.err"; fail=1; return
  fi
  if [ "$(wc -l < "$work/$name.json")" != 1 ]; then
    echo "FAIL: $name: expected one JSON line (world rank 0), got:"; cat "$work/$name.json"; fail=1; return
  fi
  local ref got worst
  ref=$(val "$work/ref_${dp}${flag}.json") got=$(val "$work/$name.json")
  if ! worst=$(awk -v a="$ref" -v b="$got" 'BEGIN { r = (a - b) / a; if (r < 0) r = -r; printf "%.2e", r; exit !(r <= 1e-5) }'); then
    echo "FAIL: $name: val loss $got, single rank $ref ($worst relative)"; fail=1; return
  fi
  grep -q '"step": 4' "$work/$name.json" || { echo "FAIL: $name did not evaluate step 4"; fail=1; return; }
  echo "ok: $name on $np ranks: val loss $got, single rank $ref ($worst relative)"
}
check default_dp2 2 2 ""
check pp1_dp2_ep2 2 2 "" --set parallel.dp=2 --set parallel.ep=2
check pp2_dp1_ep1 2 1 "" --set parallel.pp=2
check pp2_dp2_ep2 4 2 "" --set parallel.pp=2 --set parallel.dp=2 --set parallel.ep=2
check pp1_dp2_ep2_disable_top1 2 2 --disable-top1 --set parallel.dp=2 --set parallel.ep=2
d1=$(val "$work/ref_2--disable-top1.json") all=$(val "$work/ref_2.json")
[ "$d1" != "$all" ] || { echo "FAIL: --disable-top1 did not change the loss ($all)"; fail=1; }

# 3 ranks for a config asking pp * dp = 2: refused, naming both numbers.
if "$mpiexec" "${mpi_flags[@]}" -np 3 "$cmoe" eval "${common[@]}" --set parallel.dp=2 --checkpoint "$ck" \
     > "$work/bad.log" 2>&1; then
  echo "FAIL: 3 ranks for pp * dp = 2 were accepted"; fail=1
elif ! grep -q "2" "$work/bad.log" || ! grep -q "3" "$work/bad.log"; then
  echo "FAIL: the mismatch message does not name both numbers:"; cat "$work/bad.log"; fail=1
else
  echo "ok: 3 ranks for pp * dp = 2 refused: $(grep -m1 -i "world\|ranks" "$work/bad.log")"
fi
exit $fail
