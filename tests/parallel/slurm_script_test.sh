#!/usr/bin/env bash
# scripts/slurm/train.sbatch, checked without Slurm:
#  1. `bash -n` parses it, and every `#SBATCH` option and every srun option it uses is one
#     Slurm documents (the lists below, from the sbatch and srun manual pages);
#  2. it runs as the batch script of a two-node allocation: SLURM_* variables as sbatch sets them
#     (2 nodes x 2 tasks), with a stand-in `srun` (the srun options are checked against the list,
#     then the step is started with Open MPI across two "nodes" over TCP, as multinode_tcp.sh
#     does), once with LAUNCHER=srun and once with LAUNCHER=mpirun (Open MPI's mpirun, given
#     the same two-node hostfile and launch agent). NET_IF=lo exercises the interface setting.
#     Both jobs pass its shared-file-system check and train (pp, dp, ep) = (1, 4, 2) to the
#     same per-step losses as one rank (1e-5 relative);
#  3. a binary the nodes cannot see fails the shared-file-system check before training.
# Usage: slurm_script_test.sh CMOE MAKE_DATASET CONFIG MPIEXEC SOURCE_DIR
set -euo pipefail
cmoe=$(realpath "$1") make_dataset=$2 config=$(realpath "$3") mpiexec=$4 src=$(realpath "$5")
script=$src/scripts/slurm/train.sbatch
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export TMPDIR=$work/tmp  # Open MPI's session directories (per "node": local_rsh.sh), removed with $work
mkdir -p "$TMPDIR"
fail=0

# 1. syntax and option names
bash -n "$script" || { echo "FAIL: bash -n $script"; exit 1; }
# Options of sbatch(1) and srun(1) that a script like this may use.
sbatch_opts=" job-name nodes ntasks ntasks-per-node cpus-per-task time signal output error partition account
  gpus-per-node gpus-per-task gres mem exclusive requeue constraint qos "
srun_opts=" mpi kill-on-bad-exit ntasks ntasks-per-node nodes cpu-bind cpus-per-task export label gpus-per-task gpu-bind "
for o in $(sed -n 's/^#SBATCH --\([a-z-]*\).*/\1/p' "$script"); do
  [[ $sbatch_opts == *" $o "* ]] || { echo "FAIL: #SBATCH --$o is not an sbatch option"; fail=1; }
done
echo "ok: bash -n; #SBATCH options: $(sed -n 's/^#SBATCH --\([a-z-]*\).*/\1/p' "$script" | tr '\n' ' ')"

# 2. the allocation, the stand-in srun and the mpirun wrapper
printf 'nodeA slots=2\nnodeB slots=2\n' > "$work/hosts"
mkdir -p "$work/bin"
cat > "$work/bin/srun" <<SRUN
#!/usr/bin/env bash
# Stand-in srun: checks its options, then starts the step with Open MPI (no Slurm here).
ntasks=\$SLURM_NTASKS per_node=
while [[ \$1 == --* ]]; do
  name=\${1%%=*}; name=\${name#--}; value=\${1#*=}
  [[ "$srun_opts" == *" \$name "* ]] || { echo "stand-in srun: --\$name is not an srun option" >&2; exit 2; }
  case \$name in ntasks) ntasks=\$value ;; ntasks-per-node) per_node=\$value ;; esac
  shift
done
echo "\$ntasks \$per_node" >> "$work/srun.calls"
env -u SLURM_JOB_ID -u SLURM_JOBID -u SLURM_NODELIST -u SLURM_JOB_NODELIST -u SLURM_TASKS_PER_NODE \\
  "$mpiexec" --hostfile "$work/hosts" --mca plm_rsh_agent "$here/local_rsh.sh" --mca btl self,tcp \\
  --mca btl_tcp_if_include lo --mca oob_tcp_if_include lo --bind-to none --map-by ppr:\$per_node:node \\
  -np "\$ntasks" "\$@"
SRUN
cat > "$work/bin/mpirun" <<MPIRUN
#!/usr/bin/env bash
# Open MPI's mpirun with this machine's two-"node" allocation in place of Slurm's node list.
echo "\$*" >> "$work/mpirun.calls"
exec env -u SLURM_JOB_ID -u SLURM_JOBID -u SLURM_NODELIST -u SLURM_JOB_NODELIST -u SLURM_TASKS_PER_NODE \\
  "$mpiexec" --hostfile "$work/hosts" --mca plm_rsh_agent "$here/local_rsh.sh" --mca btl self,tcp "\$@"
MPIRUN
chmod +x "$work/bin/srun" "$work/bin/mpirun"
"$make_dataset" "$work/data" 512 200 7
common=(--config "$config" --set data.prefix="$work/data" --set train.steps=6 --set train.lr=0.01
        --set train.min_lr=0.001 --set train.warmup_steps=2 --set train.eval_interval=1000
        --set checkpoint.interval=0 --set train.precision=f32)
losses() { grep -o '"loss": [-0-9.e]*' "$1/metrics.jsonl" | sed 's/"loss": //'; }
OMP_NUM_THREADS=1 "$cmoe" train "${common[@]}" --set train.micro_batch_size=8 --run-dir "$work/ref" > "$work/ref.log" 2>&1 \
  || { echo "FAIL: single-rank run"; tail -20 "$work/ref.log"; exit 1; }
job() {  # job LAUNCHER ID [extra env...]: the batch script as sbatch would run it
  local launcher=$1 id=$2
  shift 2
  (cd "$work" && env PATH="$work/bin:$PATH" SLURM_JOB_ID=$id SLURM_JOBID=$id SLURM_NTASKS=4 SLURM_NPROCS=4 \
     SLURM_JOB_NUM_NODES=2 SLURM_NNODES=2 SLURM_NTASKS_PER_NODE=2 SLURM_TASKS_PER_NODE="2(x2)" \
     SLURM_JOB_NODELIST="nodeA,nodeB" SLURM_CPUS_PER_TASK=1 SLURM_SUBMIT_DIR="$work" \
     LAUNCHER=$launcher NET_IF=lo CMOE="$cmoe" RUN_DIR="runs/$launcher" "$@" \
     bash "$script" "${common[@]}" --set train.micro_batch_size=2 --set parallel.dp=4 --set parallel.ep=2)
}
for launcher in srun mpirun; do
  if ! job $launcher 100 > "$work/$launcher.log" 2>&1; then
    echo "FAIL: train.sbatch with LAUNCHER=$launcher:"; tail -30 "$work/$launcher.log"; fail=1; continue
  fi
  run="$work/runs/$launcher"
  if [ "$(losses "$run" | wc -l)" != 6 ]; then
    echo "FAIL: LAUNCHER=$launcher logged $(losses "$run" | wc -l) steps"; fail=1; continue
  fi
  if ! worst=$(paste <(losses "$work/ref") <(losses "$run") | awk '
      { r = ($1 - $2) / $1; if (r < 0) r = -r; if (r > w) w = r }
      END { printf "%.2e", w; exit !(w <= 1e-5) }'); then
    echo "FAIL: LAUNCHER=$launcher: losses differ from one rank by $worst"; fail=1; continue
  fi
  ls "$run"/.visible-from-all-nodes.* > /dev/null 2>&1 && { echo "FAIL: the shared-FS marker was left behind"; fail=1; }
  echo "ok: train.sbatch, LAUNCHER=$launcher, 2 nodes x 2 ranks: 6 losses within $worst of one rank ($(grep -m1 '^train.sbatch:' "$work/$launcher.log"))"
done
# The steps the script started: the per-node check (2 tasks, 1 per node), then 4 ranks, 2 per node.
[ "$(tr '\n' ';' < "$work/srun.calls")" = "2 1;4 2;" ] || { echo "FAIL: srun steps: $(cat "$work/srun.calls")"; fail=1; }
grep -q -- "-np 4 --map-by ppr:2:node --bind-to none -x OMP_NUM_THREADS -x CMOE_COMM_TIMEOUT_S --mca btl_tcp_if_include lo --mca oob_tcp_if_include lo" \
  "$work/mpirun.calls" || { echo "FAIL: mpirun command: $(cat "$work/mpirun.calls")"; fail=1; }

# 3. a binary outside the "shared" file system is refused before any rank starts training
mkdir -p "$work/local"
if job srun 101 CMOE="$work/local/cmoe-not-there" > "$work/noshare.log" 2>&1; then
  echo "FAIL: a binary no node sees was accepted"; fail=1
elif ! grep -q "does not see .*cmoe-not-there.*a shared file system is required" "$work/noshare.log"; then
  echo "FAIL: the shared-file-system error does not say so:"; cat "$work/noshare.log"; fail=1
else
  echo "ok: a binary the nodes cannot see stops the job before training: $(grep -m1 'does not see' "$work/noshare.log")"
fi
exit $fail
