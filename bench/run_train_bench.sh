#!/usr/bin/env bash
# run_train_bench.sh — cmoe's training step against the PyTorch eager peer on cpu-small, in one
# command: every variant (cartesian, smoe, fine_grained) x precision (f32, bf16), each
# configuration in its own process (so max RSS is its own), then a table.
#
# usage: bench/run_train_bench.sh [BUILD_DIR] [STEPS]      (defaults: build, 3)
# Env: CMOE_BENCH_VARIANTS="cartesian smoe fine_grained", CMOE_BENCH_PRECISIONS="f32 bf16",
#      CMOE_BENCH_SKIP_TORCH=1 to run cmoe only. Both sides use 2 threads. The raw JSON lines
# are kept in $BUILD_DIR/train_bench.jsonl. "MFU paired" is each step against the matmul peak
# measured again right after it (median over the steps): on a machine whose speed drifts, it
# compares the step with the machine's speed at the time (train_step_bench.cpp).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
steps=${2:-3}
variants=${CMOE_BENCH_VARIANTS:-cartesian smoe fine_grained}
precisions=${CMOE_BENCH_PRECISIONS:-f32 bf16}
python=/usr/bin/python3  # Debian's python3 with python3-torch (a pyenv python3 may shadow it)
out="$build/train_bench.jsonl"
: > "$out"

if [[ ! -x "$build/bin/train_step_bench" ]]; then
  echo "run_train_bench: $build/bin/train_step_bench is missing; build it: ninja -C $build train_step_bench" >&2
  exit 1
fi
echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) (other work on the cores skews both sides)"
for v in $variants; do
  for p in $precisions; do
    echo "cmoe  $v $p ..." >&2
    OMP_NUM_THREADS=2 "$build/bin/train_step_bench" --variant "$v" --precision "$p" --steps "$steps" --warmup 1 | tee -a "$out"
    if [[ -z "${CMOE_BENCH_SKIP_TORCH:-}" ]]; then
      echo "torch $v $p ..." >&2
      OMP_NUM_THREADS=2 "$python" bench/torch_peer.py --variant "$v" --precision "$p" --steps "$steps" --warmup 1 \
        --threads 2 | tee -a "$out"
    fi
  done
done

"$python" - "$out" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
by = {(r["impl"], r["variant"], r["precision"]): r for r in rows}
print()
print(f"{'variant':<13} {'prec':<5} {'cmoe tok/s':>10} {'torch tok/s':>11} {'speedup':>8} {'cmoe MFU':>9} "
      f"{'MFU paired':>10} {'cmoe alloc MB':>13} {'cmoe RSS MB':>11} {'torch RSS MB':>12}")
for (impl, v, p), c in by.items():
    if impl != "cmoe":
        continue
    t = by.get(("torch", v, p))
    tt = f"{t['tokens_per_s']:.0f}" if t else "-"
    sp = f"{c['tokens_per_s'] / t['tokens_per_s']:.2f}x" if t else "-"
    tr = f"{t['max_rss_mb']:.0f}" if t else "-"
    print(f"{v:<13} {p:<5} {c['tokens_per_s']:>10.0f} {tt:>11} {sp:>8} {100 * c['mfu']:>8.1f}% "
          f"{100 * c['mfu_paired']:>9.1f}% {c['alloc_peak_mb']:>13.0f} {c['max_rss_mb']:>11.0f} {tr:>12}")
PY
