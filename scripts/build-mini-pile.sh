#!/usr/bin/env bash
# Builds the embedded mini-Pile (README.md): from the Debian packages it is drawn from
# (installed by scripts/install-deps.sh; missing ones are an error), extracts Pile-format
# jsonl.zst (one pile_set_name per source), trains the default byte-level BPE tokenizer
# (vocabulary 8192) and preprocesses train/validation Megatron datasets. Idempotent: each
# stage is skipped when its output exists.
# Usage: scripts/build-mini-pile.sh [OUT_DIR]   (default data-cache/mini-pile; needs build/bin/cmoe,
# or the binary $CMOE_BIN names). Relative paths: OUT_DIR from the repository root, CMOE_BIN from
# the caller's directory.
set -euo pipefail
cmoe=build/bin/cmoe
if [[ -n ${CMOE_BIN:-} ]]; then cmoe=$(realpath "$CMOE_BIN"); fi
cd "$(dirname "$0")/.."
out=${1:-data-cache/mini-pile}
[[ -x $cmoe ]] || { echo "build-mini-pile: $cmoe not found; run scripts/build.sh first" >&2; exit 1; }

# The source packages come from scripts/install-deps.sh; this script installs nothing.
pkgs=(bible-kjv fortunes python3.11-doc dict-gcide zstd python3)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "build-mini-pile: the Debian packages ${missing[*]} are missing; run scripts/install-deps.sh" >&2
  exit 1
fi

mkdir -p "$out"
if [[ ! -s $out/train.jsonl.zst || ! -s $out/val.jsonl.zst ]]; then
  /usr/bin/python3 scripts/mini_pile.py "$out/raw"
  for s in train val; do
    zstd -q -f -10 -T0 "$out/raw/$s.jsonl" -o "$out/$s.jsonl.zst.tmp" && mv "$out/$s.jsonl.zst.tmp" "$out/$s.jsonl.zst"
  done
fi
if [[ ! -s $out/tokenizer.json ]]; then
  "$cmoe" tokenizer train --input "$out/raw/train.txt" --vocab-size 8192 --output "$out/tokenizer.json"
fi
for s in train val; do
  if [[ ! -s $out/${s}_text_document.idx ]]; then
    "$cmoe" preprocess --input "$out/$s.jsonl.zst" --tokenizer "$out/tokenizer.json" \
      --output-prefix "$out/${s}_text_document" --append-eod
  fi
done
echo "build-mini-pile: $out ready"
"$cmoe" data inspect "$out/train_text_document" | sed 's/^/  /'
