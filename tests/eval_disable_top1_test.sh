#!/usr/bin/env bash
# `cmoe eval --disable-top1` (the paper's routing-robustness test) on briefly trained tiny
# checkpoints: for a top-k variant (smoe) and a top-p variant (topp) it runs, reports
# "disable_top1": true and changes the validation loss; for hash routing (a fixed table, no
# ranking) and a dense model (no routers) it is refused with exit 1 and the reason.
# Usage: eval_disable_top1_test.sh CMOE MAKE_DATASET CONFIG
set -euo pipefail
cmoe=$1 make_dataset=$2 config=$3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export OMP_NUM_THREADS=1
fail() { echo "FAIL: $*"; exit 1; }
"$make_dataset" "$work/data" 512 100 7
val() { sed -E 's/.*"val_loss": ([0-9.]+).*/\1/' "$1"; }
for kind in SMOE TOPP HASH DENSE; do
  common=(--config "$config" --set data.prefix="$work/data" --set model.moe.kind=$kind)
  "$cmoe" train "${common[@]}" --set train.steps=4 --set train.lr=0.01 --set checkpoint.interval=4 \
    --set train.eval_interval=1000 --run-dir "$work/$kind" > "$work/$kind.train.log"
  "$cmoe" eval "${common[@]}" --checkpoint "$work/$kind/checkpoints" --json > "$work/$kind.all.json"
  rc=0
  "$cmoe" eval "${common[@]}" --checkpoint "$work/$kind/checkpoints" --disable-top1 --json > "$work/$kind.d1.json" \
    2> "$work/$kind.d1.err" || rc=$?
  case $kind in
    SMOE|TOPP)
      [ "$rc" = 0 ] || fail "$kind --disable-top1 exited $rc: $(cat "$work/$kind.d1.err")"
      grep -q '"disable_top1": true' "$work/$kind.d1.json" || fail "$kind: disable_top1 not reported"
      a=$(val "$work/$kind.all.json") d=$(val "$work/$kind.d1.json")
      [ "$a" != "$d" ] || fail "$kind: --disable-top1 left the loss unchanged ($a)"
      echo "ok: $kind: val loss $a, with each token's top-1 expert disabled $d"
      ;;
    HASH|DENSE)
      [ "$rc" = 1 ] || fail "$kind --disable-top1 exited $rc (expected 1, refused)"
      [ ! -s "$work/$kind.d1.json" ] || fail "$kind --disable-top1 printed a result: $(cat "$work/$kind.d1.json")"
      grep -q "no top-1 expert to disable" "$work/$kind.d1.err" || fail "$kind: no reason given: $(cat "$work/$kind.d1.err")"
      echo "ok: $kind: --disable-top1 refused: $(cat "$work/$kind.d1.err")"
      ;;
  esac
done
