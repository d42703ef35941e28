#!/usr/bin/env bash
# scaling.sh — training throughput of one config across parallel layouts, the same script on a
# laptop or a cluster: for each (pp, dp, ep) it runs `mpirun -np pp*dp cmoe train` for a few
# steps on a fresh run directory and reports tokens/s (median of the logged steps after the
# first) and the scaling efficiency against the first layout, per rank.
#
# usage: bench/scaling.sh CONFIG "PP,DP,EP PP,DP,EP ..." [STEPS] [extra cmoe train flags]
#   e.g. bench/scaling.sh configs/cpu-small.textproto "1,1,1 1,2,1 1,2,2 2,1,1" 6
# Env: MPIRUN (default: mpirun --oversubscribe --bind-to none), CMOE (default build/bin/cmoe),
# SCALING_DIR (where the run directories go; default ./scaling-runs, under the directory the
# script is started from).
# Run directories: every rank writes into its run directory (checkpoint shards), so on several
# nodes it must be on a file system all of them see: SCALING_DIR/<timestamp>/run-PP-DP-EP, made
# under the caller's directory or SCALING_DIR, never in the launch node's /tmp. Each keeps its
# log and metrics.jsonl; the final checkpoint is deleted once the layout is measured.
# Global batch = micro_batch_size * dp * grad_accum, so larger dp trains more tokens per step.
set -euo pipefail
caller=$PWD
repo=$(cd "$(dirname "$0")/.." && pwd)
config=$1 layouts=$2 steps=${3:-6}
shift $(( $# < 3 ? $# : 3 ))
# CONFIG: relative to the caller's directory, or else to the repository (the documented examples).
if [[ $config != /* ]]; then
  if [[ -e $caller/$config ]]; then config=$caller/$config; else config=$repo/$config; fi
fi
cmoe=${CMOE:-$repo/build/bin/cmoe}
[[ $cmoe == /* ]] || cmoe=$caller/$cmoe
mpirun_cmd=${MPIRUN:-mpirun --oversubscribe --bind-to none}
export OMPI_ALLOW_RUN_AS_ROOT=${OMPI_ALLOW_RUN_AS_ROOT:-1} OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=${OMPI_ALLOW_RUN_AS_ROOT_CONFIRM:-1}
root=${SCALING_DIR:-scaling-runs}
[[ $root == /* ]] || root=$caller/$root
work=$root/$(date +%Y%m%d-%H%M%S)-$$
mkdir -p "$work"
echo "scaling: run directories in $work"
printf '%-10s %6s %12s %14s %11s\n' layout ranks tokens/s "tok/s/rank" efficiency
base=""
for l in $layouts; do
  IFS=, read -r pp dp ep <<< "$l"
  n=$((pp * dp))
  run="$work/run-$pp-$dp-$ep"
  # shellcheck disable=SC2086
  $mpirun_cmd -np "$n" "$cmoe" train --config "$config" --run-dir "$run" --set train.steps="$steps" \
    --set train.log_interval=1 --set train.eval_interval=1000000 --set checkpoint.interval=0 \
    --set parallel.pp="$pp" --set parallel.dp="$dp" --set parallel.ep="$ep" "$@" > "$run.log" 2>&1 \
    || { echo "scaling: layout $l failed; see below ($run.log)"; tail -20 "$run.log"; exit 1; }
  rm -rf "$run/checkpoints"
  tps=$(grep '"tokens_per_s"' "$run/metrics.jsonl" | tail -n +2 | sed -E 's/.*"tokens_per_s": ([0-9.]+).*/\1/' \
        | sort -g | awk '{a[NR]=$1} END {print (NR ? a[int((NR+1)/2)] : 0)}')
  per_rank=$(awk -v t="$tps" -v n="$n" 'BEGIN {printf "%.1f", t / n}')
  [[ -z $base ]] && base=$per_rank
  eff=$(awk -v p="$per_rank" -v b="$base" 'BEGIN {printf "%.0f%%", 100 * p / b}')
  printf '%-10s %6d %12.1f %14s %11s\n' "$pp,$dp,$ep" "$n" "$tps" "$per_rank" "$eff"
done
