#!/usr/bin/env bash
# A two-node job on one machine, as Open MPI runs one across nodes: a hostfile names two nodes
# (nodeA, nodeB, two slots each), local_rsh.sh stands in for ssh so mpirun starts one daemon per
# node, and ranks talk over TCP only (--mca btl self,tcp; loopback, as the sandbox has no other
# interface). Checks:
#  1. the ranks land two per node (each sees OMPI_COMM_WORLD_LOCAL_SIZE = 2, local ranks 0 and 1),
#     which is what picks a rank's GPU (local rank modulo the node's GPU count);
#  2. `cmoe train` with (pp, dp, ep) = (2, 2, 2) — stage 0 on nodeA, stage 1 on nodeB, so
#     activations, gradients, all-reduces and expert all-to-alls cross the "network" — logs
#     per-step losses equal to the single-rank run's to 1e-5 relative (f32, 8 steps, same global
#     batch and seed);
#  3. its checkpoint (shard files written by ranks of both nodes into the shared run directory)
#     verifies and holds one file per stage and expert rank.
# Usage: multinode_tcp.sh CMOE MAKE_DATASET CONFIG MPIEXEC
set -euo pipefail
cmoe=$1 make_dataset=$2 config=$3 mpiexec=$4
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export TMPDIR=$work/tmp  # Open MPI's session directories (per "node": local_rsh.sh), removed with $work
mkdir -p "$TMPDIR"
export OMP_NUM_THREADS=1
printf 'nodeA slots=2\nnodeB slots=2\n' > "$work/hosts"
mpi=("$mpiexec" --hostfile "$work/hosts" --mca plm_rsh_agent "$here/local_rsh.sh"
     --mca btl self,tcp --mca btl_tcp_if_include lo --mca oob_tcp_if_include lo
     --map-by ppr:2:node --bind-to none -x OMP_NUM_THREADS -x CMOE_COMM_TIMEOUT_S)
fail=0

# 1. placement
places=$("${mpi[@]}" -np 4 bash -c 'echo "$OMPI_COMM_WORLD_RANK $OMPI_COMM_WORLD_LOCAL_RANK $OMPI_COMM_WORLD_LOCAL_SIZE"' | sort -n | tr '\n' ' ')
if [ "$places" != "0 0 2 1 1 2 2 0 2 3 1 2 " ]; then
  echo "FAIL: ranks are not two per node: (rank, local rank, local size) = $places"; fail=1
else
  echo "ok: 4 ranks on 2 nodes (nodeA: ranks 0,1; nodeB: ranks 2,3), local ranks 0,1 on each"
fi

# 2. training across the two nodes against one rank
"$make_dataset" "$work/data" 512 200 7
common=(--config "$config" --set data.prefix="$work/data" --set train.steps=8 --set train.grad_accum=2
        --set train.lr=0.01 --set train.min_lr=0.001 --set train.warmup_steps=2 --set train.eval_interval=1000
        --set train.precision=f32 --set model.moe.kind=CARTESIAN)
losses() { grep -o '"loss": [-0-9.e]*' "$1/metrics.jsonl" | sed 's/"loss": //'; }
"$cmoe" train "${common[@]}" --set train.micro_batch_size=4 --set checkpoint.interval=0 --run-dir "$work/ref" \
  > "$work/ref.log" 2>&1 || { echo "FAIL: single-rank run"; tail -20 "$work/ref.log"; exit 1; }
if ! "${mpi[@]}" -np 4 "$cmoe" train "${common[@]}" --set train.micro_batch_size=2 --set checkpoint.interval=4 \
     --set parallel.pp=2 --set parallel.dp=2 --set parallel.ep=2 --run-dir "$work/two_nodes" > "$work/two_nodes.log" 2>&1; then
  echo "FAIL: (2,2,2) over two nodes did not run:"; tail -30 "$work/two_nodes.log"; exit 1
fi
if [ "$(losses "$work/two_nodes" | wc -l)" != 8 ]; then
  echo "FAIL: the two-node run logged $(losses "$work/two_nodes" | wc -l) steps, expected 8"; fail=1
elif ! worst=$(paste <(losses "$work/ref") <(losses "$work/two_nodes") | awk '
    { r = ($1 - $2) / $1; if (r < 0) r = -r; if (r > w) w = r }
    END { printf "%.2e", w; exit !(w <= 1e-5) }'); then
  echo "FAIL: two-node losses differ from the single-rank run by $worst relative"
  paste <(losses "$work/ref") <(losses "$work/two_nodes"); fail=1
else
  echo "ok: (pp,dp,ep)=(2,2,2) over TCP between two nodes: 8 losses within $worst relative of one rank"
fi

# 3. the checkpoint written from both nodes
files=$(cd "$work/two_nodes/checkpoints/step_00000008" && ls shard_*.bin | tr '\n' ' ')
if [ "$files" != "shard_pp000_ep000.bin shard_pp000_ep001.bin shard_pp001_ep000.bin shard_pp001_ep001.bin " ]; then
  echo "FAIL: the two-node checkpoint holds: $files"; fail=1
elif ! "$cmoe" checkpoint verify "$work/two_nodes/checkpoints" > "$work/verify.log" 2>&1; then
  echo "FAIL: the two-node checkpoint does not verify:"; cat "$work/verify.log"; fail=1
else
  echo "ok: checkpoint shards of both nodes' stages in the shared run directory verify: $(cat "$work/verify.log")"
fi
exit $fail
