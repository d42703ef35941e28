#!/usr/bin/env bash
# scripts/main-job.sh's command line, run for real in a copy of the repository whose two set-up
# steps are stand-ins: scripts/build.sh links the tested binary as build/bin/cmoe, and
# scripts/build-mini-pile.sh links the cached mini-Pile (tests/mini_pile_cache.sh) as
# data-cache/mini-pile. main-job.sh itself and configs/cpu-small.textproto are the real ones.
#  1. `main-job.sh --set ...` (train flags, no run directory) trains into runs/cpu-small, and the
#     model overrides (a smaller cpu-small) reach `cmoe eval`, which could not load the checkpoint
#     otherwise; `--set train.eval_batches=1` reaches it too (its token count is one batch);
#  2. `main-job.sh DIR --set ...` trains into DIR; running it again finds the run finished;
#  3. `--set=path=value` (one argument) works the same way.
# Usage: main_job_test.sh CMOE SOURCE_DIR WORKDIR CACHE_ROOT
set -euo pipefail
cmoe=$(realpath "$1") src=$(realpath "$2") work=$3 cache=$4
rm -rf "$work"
mkdir -p "$work"
work=$(realpath "$work")
mp=$("$src/tests/mini_pile_cache.sh" "$cmoe" "$src" "$cache" 2> "$work/mini_pile.log" | tail -1) \
  || { echo "FAIL: the mini-Pile"; cat "$work/mini_pile.log"; exit 1; }

repo=$work/repo
mkdir -p "$repo/scripts" "$repo/configs"
cp "$src/scripts/main-job.sh" "$repo/scripts/"
cp "$src/configs/cpu-small.textproto" "$repo/configs/"
cat > "$repo/scripts/build.sh" <<STUB
#!/usr/bin/env bash
# stand-in for the build: the binary under test
mkdir -p build/bin && ln -sfn "$cmoe" build/bin/cmoe
STUB
cat > "$repo/scripts/build-mini-pile.sh" <<STUB
#!/usr/bin/env bash
# stand-in: the cached mini-Pile
mkdir -p data-cache && ln -sfn "$mp" data-cache/mini-pile
STUB
small=(--set model.d_model=64 --set model.n_heads=4 --set model.ffn_hidden=128 --set model.n_layers=2
       --set model.seq_len=64 --set train.micro_batch_size=2 --set train.steps=3 --set train.eval_interval=3
       --set checkpoint.interval=3 --set train.eval_batches=1)
fail=0
export OMP_NUM_THREADS=1

# 1. train flags only
if ! (cd "$work" && bash repo/scripts/main-job.sh "${small[@]}") > "$work/job1.log" 2>&1; then
  echo "FAIL: main-job.sh --set ... (no run directory):"; tail -20 "$work/job1.log"; exit 1
fi
steps=$(grep -c '"loss"' "$repo/runs/cpu-small/metrics.jsonl" || true)
[ "$steps" = 3 ] || { echo "FAIL: runs/cpu-small has $steps training steps, expected 3"; fail=1; }
# eval's line: "checkpoint DIR (step 3): val loss X | val ppl Y | N tokens", N = 1 batch x 2 x 64
evalline=$(grep '^checkpoint .*(step 3): val loss' "$work/job1.log" || true)
if [[ $evalline != *"| 128 tokens" ]]; then
  echo "FAIL: eval did not get the overrides (want step 3 and 128 tokens): '$evalline'"; fail=1
else
  echo "ok: main-job.sh --set ... trained runs/cpu-small (3 steps) and eval used the overrides: $evalline"
fi
grep -q '^main job: unigram entropy' "$work/job1.log" || { echo "FAIL: no unigram baseline line"; fail=1; }

# 2. a run directory, then the same command again
if ! (cd "$work" && bash repo/scripts/main-job.sh "$work/other" "${small[@]}") > "$work/job2.log" 2>&1; then
  echo "FAIL: main-job.sh DIR --set ...:"; tail -20 "$work/job2.log"; fail=1
elif [ "$(grep -c '"loss"' "$work/other/metrics.jsonl")" != 3 ]; then
  echo "FAIL: main-job.sh DIR did not train into DIR"; fail=1
elif ! (cd "$work" && bash repo/scripts/main-job.sh "$work/other" "${small[@]}") > "$work/job3.log" 2>&1 \
     || ! grep -q "nothing to train: the run is already at step 3" "$work/job3.log"; then
  echo "FAIL: re-running a finished run:"; tail -5 "$work/job3.log"; fail=1
else
  echo "ok: main-job.sh DIR --set ... trained into DIR; a second run reports it finished and evaluates it"
fi

# 3. --set=path=value
eq=(); for ((i = 0; i < ${#small[@]}; i += 2)); do eq+=("--set=${small[i + 1]}"); done
if ! (cd "$work" && bash repo/scripts/main-job.sh "$work/eq" "${eq[@]}") > "$work/job4.log" 2>&1 \
   || [[ $(grep '^checkpoint .*(step 3): val loss' "$work/job4.log") != *"| 128 tokens" ]]; then
  echo "FAIL: main-job.sh with --set=path=value:"; tail -5 "$work/job4.log"; fail=1
else
  echo "ok: --set=path=value reaches train and eval alike"
fi
exit $fail
