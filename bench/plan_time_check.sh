#!/usr/bin/env bash
# plan_time_check.sh — `cmoe plan --hardware cpu` against measured training steps on this
# machine (docs/planner.md, "The time check"): for layouts of cpu-small on 1, 2 and 4 ranks, at
# one global batch (16 sequences of 256 tokens), it trains a few steps per layout, takes the
# median step time of the steps after the first two, and compares it with the plan's predicted
# step time: the ratio per layout (the check: within 25%) and whether the two rankings agree.
# It also compares, per kind of collective, world rank 0's counted calls and bytes of every step
# (metrics.jsonl) with the plan's: exact, except all_to_all_v, which follows the routing and
# must lie in the plan's range.
#
# usage: bench/plan_time_check.sh [BUILD_DIR] [STEPS]     (default build, 8 steps)
# The machine should be quiet: the script prints the load average before and after. The
# hardware is measured once, under mpirun -np 2 (matmul peak, memory bandwidth, MPI link),
# into $work/cpu.textproto; every plan reads that file and measures cpu-small's efficiencies at
# its layout's micro-batch and threads per rank, and its routing imbalance on the run's first
# micro-batches (--calibrate, with the run's own config) before planning.
# Env: PLAN_CHECK_DIR (default /tmp/cmoe-plan-check), PLAN_CHECK_LAYOUTS ("PP,DP,EP,MB,GA ...").
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$repo/build}
steps=${2:-8}
cmoe=$build/bin/cmoe
work=${PLAN_CHECK_DIR:-/tmp/cmoe-plan-check}
config=$repo/configs/cpu-small.textproto
cores=$(nproc)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mpirun=(mpirun --oversubscribe --bind-to none --mca btl self,vader)
# Global batch 16 = micro-batch * dp * grad_accum in every layout.
layouts=${PLAN_CHECK_LAYOUTS:-"1,1,1,8,2 1,2,1,8,1 1,2,2,8,1 2,1,1,8,2 1,4,1,4,1 1,4,2,4,1 2,2,1,8,1 2,2,2,8,1 4,1,1,4,4"}
rm -rf "$work"
mkdir -p "$work"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg) (${cores} cores)"
"$build/bin/make_test_dataset" "$work/data" 8192 4000 11 > /dev/null
common=(--config "$config" --set data.prefix="$work/data" --set data.valid_prefix="$work/data" --set data.tokenizer=
        --set data.split=1,0,0 --set data.valid_split=0,1,0 --set train.eval_batches=1 --set train.steps="$steps"
        --set train.eval_interval=100000 --set train.log_interval=100000 --set checkpoint.interval=0
        --set checkpoint.keep_last=1)

# The hardware, measured once with two ranks (the link between them).
OMP_NUM_THREADS=1 "${mpirun[@]}" -np 2 "$cmoe" plan --config "$config" --gpus 2 --hardware cpu \
  --write-hardware "$work/cpu.textproto" --top 1 > /dev/null
grep -E '^(description|peak|memory_gbs|intra)' "$work/cpu.textproto"

printf '%-14s %5s %10s %10s %8s %8s  %s\n' "pp,dp,ep mb ga" ranks measured predicted ratio spread \
  "world rank 0's collectives against the plan" | tee "$work/table.txt"
for l in $layouts; do
  IFS=, read -r pp dp ep mb ga <<< "$l"
  n=$((pp * dp)) run="$work/run-$pp-$dp-$ep"
  threads=$(( cores / n > 0 ? cores / n : 1 ))
  set_layout=(--set parallel.pp=$pp --set parallel.dp=$dp --set parallel.ep=$ep --set train.micro_batch_size=$mb
              --set train.grad_accum=$ga)
  if [ "$n" = 1 ]; then
    OMP_NUM_THREADS=$threads "$cmoe" train "${common[@]}" "${set_layout[@]}" --run-dir "$run" > "$run.log" 2>&1
  else
    OMP_NUM_THREADS=$threads "${mpirun[@]}" -np $n -x OMP_NUM_THREADS "$cmoe" train "${common[@]}" "${set_layout[@]}" \
      --run-dir "$run" > "$run.log" 2>&1
  fi
  OMP_NUM_THREADS=$cores "$cmoe" plan "${common[@]}" "${set_layout[@]}" --gpus $n --hardware "$work/cpu.textproto" \
    --calibrate --layout $pp,$dp,$ep --zero1 off --json > "$run.plan.json"
  python3 "$repo/bench/plan_time_compare.py" "$run/metrics.jsonl" "$run.plan.json" "$pp,$dp,$ep $mb $ga" $n \
    | tee -a "$work/table.txt"
  rm -rf "$run/checkpoints"
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 "$repo/bench/plan_time_compare.py" --summary "$work/table.txt"
