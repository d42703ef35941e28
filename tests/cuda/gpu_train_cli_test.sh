#!/usr/bin/env bash
# `cmoe train --set train.device=...` through the binary.
#  Everywhere: an unknown device is refused (exit 1, the allowed values named, nothing written).
#  Without a usable GPU: train.device=cuda exits 1 naming the reason and writes no run
#  directory; under mpirun -np 2 every rank ends, saying how many ranks had no GPU.
#  With a GPU: checkpoints are device-independent — a run saved on the GPU resumes on the CPU
#  and one saved on the CPU resumes on the GPU, each within 1e-4 relative of an uninterrupted
#  CPU run's losses; GPU records carry peak_device_mb.
# Usage: gpu_train_cli_test.sh CMOE MAKE_DATASET CONFIG MPIEXEC [MPIEXEC_FLAGS...]
set -euo pipefail
cmoe=$1 make_dataset=$2 config=$3 mpiexec=$4
shift 4
mpi_flags=("$@")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
export OMP_NUM_THREADS=1
"$make_dataset" "$work/data" 512 200 5
common=(--config "$config" --set data.prefix="$work/data" --set train.steps=6 --set train.eval_interval=100
        --set train.precision=f32 --set checkpoint.interval=3)

set +e
"$cmoe" train "${common[@]}" --set train.device=tpu --run-dir "$work/tpu" > "$work/tpu.out" 2>&1
rc=$?
set -e
[ $rc = 1 ] || { cat "$work/tpu.out"; fail "train.device=tpu: exit $rc, want 1"; }
grep -q 'train.device = "tpu"; allowed "cpu" or "cuda"' "$work/tpu.out" || { cat "$work/tpu.out"; fail "no allowed values named"; }
[ ! -e "$work/tpu" ] || fail "a refused run created its run directory"
echo "ok: an unknown device is refused"

cuda_line=$("$cmoe" info | grep '^cuda:')
if ! echo "$cuda_line" | grep -q 'GPU(s) (backend '; then
  set +e
  "$cmoe" train "${common[@]}" --set train.device=cuda --run-dir "$work/nogpu" > "$work/nogpu.out" 2>&1
  rc=$?
  set -e
  [ $rc = 1 ] || { cat "$work/nogpu.out"; fail "train.device=cuda without a GPU: exit $rc, want 1"; }
  grep -q 'train.device = "cuda": ' "$work/nogpu.out" || { cat "$work/nogpu.out"; fail "no reason given"; }
  [ ! -e "$work/nogpu" ] || fail "a run without a GPU created its run directory"
  echo "ok: without a GPU, train.device=cuda says why: $(tail -n 1 "$work/nogpu.out")"
  set +e
  timeout 60 "$mpiexec" "${mpi_flags[@]}" -np 2 "$cmoe" train "${common[@]}" --set train.device=cuda \
    --set parallel.dp=2 --run-dir "$work/nogpu2" > "$work/nogpu2.out" 2>&1
  rc=$?
  set -e
  [ $rc != 0 ] && [ $rc != 124 ] || { cat "$work/nogpu2.out"; fail "2 ranks without GPUs: exit $rc"; }
  grep -q 'ranks have no usable GPU' "$work/nogpu2.out" || { cat "$work/nogpu2.out"; fail "2 ranks: no reason given"; }
  echo "ok: 2 ranks without GPUs end the job, naming the reason"
  echo "GPU parts skipped: no GPU ($cuda_line)"
  exit 0
fi

losses() { sed -nE '/"grad_norm"/ s/^\{"step": ([0-9]+), "loss": ([-0-9.e+]+).*/\2/p' "$1/metrics.jsonl"; }
close() {  # close RUN_A RUN_B: per-step losses within 1e-4 relative
  paste <(losses "$1") <(losses "$2") | awk -v a="$1" -v b="$2" '
    { r = ($1 - $2) / $1; if (r < 0) r = -r; if (r > w) w = r; n++ }
    END { if (n != 6 || w > 1e-4) { printf "FAIL: %s vs %s: %d steps, max rel diff %g\n", a, b, n, w; exit 1 }
          printf "ok: %s matches %s (max rel diff %.2e)\n", b, a, w }'
}
"$cmoe" train "${common[@]}" --run-dir "$work/cpu" > "$work/cpu.log"
# The GPU run stops after step 3's checkpoint; the CPU resumes it. And the other way round.
"$cmoe" train "${common[@]}" --set train.device=cuda --set train.exit_at_step=3 --run-dir "$work/g2c" > "$work/g2c.log"
grep -q '"peak_device_mb"' "$work/g2c/metrics.jsonl" || fail "GPU records lack peak_device_mb"
"$cmoe" train "${common[@]}" --run-dir "$work/g2c" >> "$work/g2c.log"
close "$work/cpu" "$work/g2c"
"$cmoe" train "${common[@]}" --set train.exit_at_step=3 --run-dir "$work/c2g" > "$work/c2g.log"
"$cmoe" train "${common[@]}" --set train.device=cuda --run-dir "$work/c2g" >> "$work/c2g.log"
close "$work/cpu" "$work/c2g"
