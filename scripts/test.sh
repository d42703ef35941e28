#!/usr/bin/env bash
# The test command: installs dependencies, builds, and runs the whole CTest suite — first the
# Release build (CUDA tests skip with a printed reason where no GPU is present), then the
# ASan+UBSan build with LeakSanitizer on. Each suite's fuzz tests (label fuzz) search with a
# fresh seed, printed here. Idempotent; safe to re-run. Usage: scripts/test.sh [--no-asan]
set -euo pipefail
cd "$(dirname "$0")/.."

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
start=$SECONDS
# A fresh fuzz seed per suite (replay a failure with CMOE_FUZZ_SEED=S ctest -L fuzz).
fuzz_seed() { echo $(( (RANDOM << 30 | RANDOM << 15 | RANDOM) % 1000000000 )); }
bash scripts/build.sh
export CMOE_FUZZ_SEED=$(fuzz_seed)
echo "== ctest (Release); fuzz seed $CMOE_FUZZ_SEED"
ctest --test-dir build --output-on-failure -j 2 --timeout 900 | tee build/ctest.log
# GPU tests skip where no GPU is present; say so plainly, with the driver's reason.
skipped=$(grep -c '\*\*\*Skipped' build/ctest.log || true)
if ((skipped > 0)); then
  echo "== $skipped tests skipped: no GPU ($(build/bin/cmoe info | sed -n 's/^cuda: //p'))"
fi
if [[ ${1:-} != --no-asan ]]; then
  bash scripts/build.sh --asan
  export CMOE_FUZZ_SEED=$(fuzz_seed)
  echo "== ctest (ASan+UBSan+LeakSanitizer); fuzz seed $CMOE_FUZZ_SEED"
  # Leaks are errors. The multi-rank tests (label mpi) add a suppression file for Open MPI's
  # own process-lifetime allocations (tests/parallel/CMakeLists.txt); nothing else is suppressed.
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir build-asan --output-on-failure -j 2 --timeout 1800
fi
echo "== all tests passed in $((SECONDS - start)) s"
