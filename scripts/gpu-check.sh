#!/usr/bin/env bash
# gpu-check.sh — the one GPU check: on a machine with NVIDIA GPUs and a clean checkout, builds cmoe
# with CUDA, runs every CUDA test, the CPU-vs-GPU training parity runs (tiny f32 and bf16,
# cpu-small f32, 30 steps), a 2-rank run against the single-GPU run, and the throughput benchmark,
# then prints one table of pass/fail and figures (format: docs/benchmarks.md, "GPU check").
#
# Fast and unattended: each stage has a time budget (timeout), a failed build or preflight ends
# the check at once, logs go to the work directory printed at the end. Goal: under 8 minutes on
# one H100/H200 with 16 cores.
#
# usage: scripts/gpu-check.sh [--build-dir DIR] [--no-build] [--no-gpu] [--jobs N] [--keep]
#   --build-dir DIR  build here (default build-gpu; reused if present)
#   --no-build       use DIR as it is (its binaries must exist)
#   --no-gpu         no GPU stages: run the CPU halves of the parity checks against themselves,
#                    to check the script, the references and the table on a machine without a GPU
#   --jobs N         parallel build jobs (default: all cores)
#   --keep           keep the work directory (logs, run directories)
# CMOE_GPU_CHECK_BUDGET_SCALE=F multiplies every stage's time budget (a slower or shared machine).
# Exit status: 0 when no stage failed, 1 otherwise, 2 for a usage error.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD

build_dir=build-gpu build=1 gpu=1 jobs=$(nproc) keep=0
while (($#)); do
  case $1 in
    --build-dir) build_dir=${2:?--build-dir needs a directory}; shift 2 ;;
    --no-build) build=0; shift ;;
    --no-gpu) gpu=0; shift ;;
    --jobs) jobs=${2:?--jobs needs a number}; shift 2 ;;
    --keep) keep=1; shift ;;
    -h|--help) sed -n '2,/^# Exit status/p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "gpu-check: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[[ $build_dir = /* ]] || build_dir=$root/$build_dir
bin=$build_dir/bin
work=$(mktemp -d "${TMPDIR:-/tmp}/cmoe-gpu-check.XXXXXX")
logs=$work/logs
mkdir -p "$logs"
((keep)) || trap 'rm -rf "$work"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
t_start=$SECONDS

# ---- the table ----
names=() results=() secs=() figures=()
record() { names+=("$1"); results+=("$2"); secs+=("$3"); figures+=("$4"); }
print_table() {
  local total=$((SECONDS - t_start)) overall=PASS i
  for i in "${!results[@]}"; do [[ ${results[$i]} == FAIL ]] && overall=FAIL; done
  printf '\n%-26s %-6s %8s  %s\n' stage result seconds figures
  for i in "${!names[@]}"; do
    printf '%-26s %-6s %8s  %s\n' "${names[$i]}" "${results[$i]}" "${secs[$i]}" "${figures[$i]}"
  done
  printf '%-26s %-6s %8s  %s\n' overall "$overall" "$total" "logs: $logs$( ((keep)) || echo ' (removed; --keep keeps them)')"
  for i in "${!names[@]}"; do
    if [[ ${results[$i]} == FAIL && -f $logs/${names[$i]// /_}.log ]]; then
      echo; echo "---- ${names[$i]}: last lines of its log ----"; tail -n 25 "$logs/${names[$i]// /_}.log"
    fi
  done
  [[ $overall == PASS ]]
}
finish() { print_table; exit $?; }
# stage NAME BUDGET_S CMD...: runs CMD (a function or program) with its output in the stage's log;
# the command prints its figures on the log's last line, prefixed "figures: ".
stage() {
  local name=$1 budget=$2 t0=$SECONDS rc log
  shift 2
  log=$logs/${name// /_}.log
  # A fresh bash runs the stage's function (exported below), so timeout can end the whole stage.
  budget=$(awk -v b="$budget" -v s="${CMOE_GPU_CHECK_BUDGET_SCALE:-1}" 'BEGIN { printf "%d", b * s }')
  timeout --kill-after=10 "$budget" bash -c '"$@"' _ "$@" > "$log" 2>&1
  rc=$?
  local fig
  fig=$(grep '^figures: ' "$log" | tail -n 1 | sed 's/^figures: //')
  if ((rc == 124 || rc == 137)); then
    record "$name" FAIL $((SECONDS - t0)) "over its ${budget} s budget${fig:+; $fig}"
  elif ((rc == 77)); then
    record "$name" SKIP $((SECONDS - t0)) "${fig:-skipped}"
  elif ((rc == 78)); then
    record "$name" BELOW $((SECONDS - t0)) "$fig"
  elif ((rc != 0)); then
    record "$name" FAIL $((SECONDS - t0)) "${fig:-exit $rc}"
  else
    record "$name" PASS $((SECONDS - t0)) "$fig"
  fi
  return $rc
}

# ---- stages ----
gpu_arch=""
preflight() {
  local missing=() t
  for t in cmake ninja mpirun timeout awk; do command -v "$t" > /dev/null || missing+=("$t"); done
  if ((gpu)); then
    if [[ -z ${CUDACXX:-} ]] && ! command -v nvcc > /dev/null && [[ -x /usr/local/cuda/bin/nvcc ]]; then
      export CUDACXX=/usr/local/cuda/bin/nvcc
    fi
    command -v "${CUDACXX:-nvcc}" > /dev/null || missing+=("nvcc (or CUDACXX)")
    command -v nvidia-smi > /dev/null || missing+=("nvidia-smi")
  fi
  if ((${#missing[@]})); then echo "figures: missing tools: ${missing[*]}"; return 1; fi
  if ((!gpu)); then echo "figures: --no-gpu: CPU-side stages only"; return 0; fi
  local list
  if ! list=$(nvidia-smi --query-gpu=name,compute_cap --format=csv,noheader 2>&1) || [[ -z $list ]]; then
    echo "$list"; echo "figures: no NVIDIA GPU visible (nvidia-smi: $(echo "$list" | head -n 1))"; return 1
  fi
  echo "$list"
  local n cap
  n=$(echo "$list" | wc -l)
  cap=$(echo "$list" | head -n 1 | awk -F', *' '{print $2}' | tr -d .)
  echo "arch=$cap" > "$work/arch"
  echo "figures: $n GPU(s): $(echo "$list" | head -n 1 | sed 's/, */ (sm_/; s/\.//; s/$/)/')$( ((n > 1)) && echo " x $n")"
}

do_build() {
  local targets=(cmoe make_test_dataset cuda_test cuda_op_harness_test nccl_comm_test gpu_train_bench)
  local arch=${gpu_arch:-80;90} args=(-DCMAKE_BUILD_TYPE=Release)
  ((gpu)) && args+=("-DCMAKE_CUDA_ARCHITECTURES=$arch") || args+=(-DCMOE_CUDA=OFF)
  cmake -S "$root" -B "$build_dir" -G Ninja "${args[@]}" || { echo "figures: cmake failed"; return 1; }
  local want=("${targets[@]}")
  ((gpu)) || want=(cmoe make_test_dataset)
  ninja -C "$build_dir" -j "$jobs" "${want[@]}" || { echo "figures: build failed"; return 1; }
  echo "figures: $( ((gpu)) && echo "CUDA sm_${arch//;/,sm_}" || echo "CPU only"), ${#want[@]} targets, -j $jobs"
}
check_binaries() {
  local b
  for b in cmoe make_test_dataset; do [[ -x $bin/$b ]] || { echo "figures: $bin/$b missing"; return 1; }; done
  echo "figures: using $build_dir as it is"
}

# "3 passed, 1 skipped" from a GoogleTest binary's summary lines
gtest_summary() {
  sed -E 's/\x1b\[[0-9;]*m//g' | awk '/^\[  PASSED  \]/ { p = $4 } /^\[  SKIPPED \]/ && / tests?, listed/ { s = $4 }
    /^\[  FAILED  \]/ && / tests?, listed/ { f = $4 }
    END { printf "%d passed", p; if (s) printf ", %d skipped", s; if (f) printf ", %d FAILED", f }'
}
cuda_tests() {
  local f=() rc=0 t out r
  for t in cuda_test cuda_op_harness_test; do
    out=$("$bin/$t" 2>&1); r=$?
    echo "$out"
    f+=("$t $(echo "$out" | gtest_summary)")
    ((r)) && rc=1
    # On a GPU machine a skip means the GPU was not usable: that fails the check.
    echo "$out" | grep -q 'skipped: no GPU' && rc=1
  done
  # NCCL: one rank, then two (sharing one GPU, NCCL refuses: that test then skips, saying so).
  for np in 1 2; do
    out=$(mpirun --oversubscribe --bind-to none -np $np "$bin/nccl_comm_test" 2>&1); r=$?
    echo "$out"
    f+=("nccl np$np $(echo "$out" | gtest_summary)")
    ((r)) && rc=1
  done
  local IFS=';'
  echo "figures: ${f[*]}" | sed 's/;/; /g'
  return $rc
}

dataset() {  # dataset VOCAB -> prefix (made once per vocabulary)
  local p=$work/data_$1
  [[ -f $p.bin ]] || "$bin/make_test_dataset" "$p" "$1" 400 7 > /dev/null
  echo "$p"
}
losses() { sed -nE '/"grad_norm"/ s/^\{"step": ([0-9]+), "loss": ([-0-9.e+]+).*/\1 \2/p' "$1/metrics.jsonl"; }
# max relative difference of per-step losses of two runs (by step); fails on missing steps
compare_runs() {
  awk 'NR == FNR { a[$1] = $2; n++; next }
       { if (!($1 in a)) { bad = 1; next } r = ($2 - a[$1]) / a[$1]; if (r < 0) r = -r; if (r > w) w = r; m++ }
       END { if (bad || m != n || n == 0) { print "mismatched steps"; exit 1 } printf "%.2e\n", w }' \
    <(losses "$1") <(losses "$2")
}
train() {  # train NAME DEVICE CONFIG [--set ...]: a run in $work/NAME
  local name=$1 device=$2 config=$3
  shift 3
  # tiny is too small for threads to pay; cpu-small uses every core
  local threads=$(nproc)
  [[ $config == *tiny* ]] && threads=1
  OMP_NUM_THREADS=$threads "$bin/cmoe" train --config "$config" --set train.device="$device" --set train.log_interval=10 \
    --set train.eval_interval=1000 --set train.eval_batches=1 --set checkpoint.interval=0 \
    "$@" --run-dir "$work/$name" > "$logs/run_$name.log" 2>&1
}
# parity NAME CONFIG VOCAB LIMIT [--set ...]: 30 steps on the CPU and on the GPU
parity() {
  local name=$1 config=$2 vocab=$3 limit=$4
  shift 4
  local data common
  data=$(dataset "$vocab")
  common=(--set data.prefix="$data" --set data.valid_prefix="" --set data.split=969,30,1 --set data.tokenizer=""
          --set train.steps=30 --set train.warmup_steps=5 "$@")
  train "${name}_cpu" cpu "$config" "${common[@]}" || { echo "figures: the CPU run failed (run_${name}_cpu.log)"; return 1; }
  local other=cuda
  ((gpu)) || other=cpu  # --no-gpu: the CPU against itself checks the machinery
  train "${name}_gpu" $other "$config" "${common[@]}" || { echo "figures: the GPU run failed (run_${name}_gpu.log)"; return 1; }
  local diff
  diff=$(compare_runs "$work/${name}_cpu" "$work/${name}_gpu") || { echo "figures: $diff"; return 1; }
  local peak
  peak=$(grep -o '"peak_device_mb": [0-9.]*' "$work/${name}_gpu/metrics.jsonl" | tail -n 1 | sed 's/.*: //')
  echo "figures: 30 steps, max rel loss diff $diff (limit $limit)$( ((gpu)) || echo ', cpu vs cpu')${peak:+, peak ${peak} MiB}"
  awk -v d="$diff" -v l="$limit" 'BEGIN { exit !(d <= l) }'
}

two_ranks() {
  local data gpus
  data=$(dataset 512)
  gpus=$( ((gpu)) && nvidia-smi -L | wc -l || echo 0)
  local device=cuda
  ((gpu)) || device=cpu
  local common=(--config "$root/configs/tiny.textproto" --set data.prefix="$data" --set data.valid_prefix=""
                --set data.split=969,30,1 --set train.steps=20 --set train.precision=f32 --set train.device=$device
                --set train.eval_interval=1000 --set train.eval_batches=1 --set checkpoint.interval=0
                --set train.grad_accum=2)
  OMP_NUM_THREADS=1 "$bin/cmoe" train "${common[@]}" --set train.micro_batch_size=4 --run-dir "$work/one" \
    > "$logs/run_one.log" 2>&1 || { echo "figures: the single-device run failed"; return 1; }
  mpirun --oversubscribe --bind-to none -x OMP_NUM_THREADS=1 -np 2 "$bin/cmoe" train "${common[@]}" --set train.micro_batch_size=2 \
    --set parallel.dp=2 --set parallel.ep=2 --run-dir "$work/two" > "$logs/run_two.log" 2>&1 ||
    { echo "figures: the 2-rank run failed (run_two.log)"; return 1; }
  local diff backend
  diff=$(compare_runs "$work/one" "$work/two") || { echo "figures: $diff"; return 1; }
  backend=$(grep -o 'activations and gradients over [a-z]*' "$logs/run_two.log" | head -n 1 | awk '{print $NF}')
  echo "figures: (dp 2, ep 2) vs one device: max rel loss diff $diff (limit 1e-4), ${gpus} GPU(s), backend ${backend:-mpi}"
  awk -v d="$diff" 'BEGIN { exit !(d <= 1e-4) }'
}

benchmark() {
  local out
  out=$("$bin/gpu_train_bench" --micro-batch "${CMOE_BENCH_MICRO_BATCH:-4}" --steps 4 --warmup 2 2>&1)
  local rc=$?
  echo "$out"
  ((rc == 77)) && { echo "figures: $(echo "$out" | sed -n 's/^skipped=//p')"; return 77; }
  ((rc)) && { echo "figures: the benchmark failed (exit $rc)"; return 1; }
  v() { echo "$out" | sed -n "s/^$1=//p"; }
  local mfu god
  mfu=$(v mfu) god=$(v grouped_over_dense)
  echo "figures: $(v tokens_per_s) tok/s, MFU $(awk -v m="$mfu" 'BEGIN { printf "%.1f%%", 100 * m }') of $(v peak_bf16_tflops) TFLOP/s (goal 40%), grouped GEMM $(awk -v g="$god" 'BEGIN { printf "%.0f%%", 100 * g }') of dense (goal 80%, $(v grouped_path)), micro-batch $(v micro_batch) x $(v seq), peak $(v peak_device_mb) MiB"
  awk -v m="$mfu" -v g="$god" 'BEGIN { exit !(m >= 0.40 && g >= 0.80) }' || return 78
}

# ---- the run ----
export -f preflight do_build check_binaries gtest_summary cuda_tests dataset losses compare_runs train parity \
  two_ranks benchmark
export root bin work logs gpu build_dir jobs
echo "cmoe gpu-check: $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo 'no git') on $(hostname), work $work"
stage preflight 30 preflight || finish
[[ -f $work/arch ]] && gpu_arch=$(sed -n 's/^arch=//p' "$work/arch")
export gpu_arch
if ((build)); then
  stage build 330 do_build || finish
else
  stage build 10 check_binaries || finish
fi
if ((gpu)); then
  stage "cuda tests" 90 cuda_tests
else
  record "cuda tests" SKIP 0 "--no-gpu"
fi
stage "parity tiny f32" 60 parity tiny "$root/configs/tiny.textproto" 512 1e-4 --set train.precision=f32
stage "parity tiny bf16" 60 parity tiny_bf16 "$root/configs/tiny.textproto" 512 2e-2 --set train.precision=bf16
stage "parity cpu-small f32" 120 parity small "$root/configs/cpu-small.textproto" 8192 1e-4 --set train.precision=f32
stage "two ranks" 90 two_ranks
if ((gpu)); then
  stage "benchmark MoE-Base" 150 benchmark
else
  record "benchmark MoE-Base" SKIP 0 "--no-gpu"
fi
finish
