#!/usr/bin/env bash
# tokenizer_cli_test.sh — `cmoe tokenizer` end to end: train on a file, encode it, decode the ids
# back to the exact bytes (invalid UTF-8 included), and check the errors for broken inputs.
# usage: tokenizer_cli_test.sh CMOE_BINARY SOURCE_DIR
set -euo pipefail
cmoe=$1
src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
{ cat "$src/tests/data/tokenizer_corpus.txt"; printf 'bad bytes: \xff\xfe\xc3 end\n'; } > "$tmp/in.txt"
"$cmoe" tokenizer train --input "$tmp/in.txt" "$src/tests/data/tokenizer_corpus.txt" --vocab-size 400 \
  --output "$tmp/tok.json" --threads 2
"$cmoe" tokenizer encode --tokenizer "$tmp/tok.json" --input "$tmp/in.txt" > "$tmp/ids.txt"
"$cmoe" tokenizer decode --tokenizer "$tmp/tok.json" --input "$tmp/ids.txt" --bytes > "$tmp/out.txt"
cmp "$tmp/in.txt" "$tmp/out.txt"
"$cmoe" tokenizer encode --tokenizer "$tmp/tok.json" --input "$tmp/in.txt" --json > "$tmp/ids.json"
"$cmoe" tokenizer decode --tokenizer "$tmp/tok.json" --input "$tmp/ids.json" --bytes | cmp - "$tmp/in.txt"
# Text decoding replaces the three bad bytes with U+FFFD.
"$cmoe" tokenizer decode --tokenizer "$tmp/tok.json" --input "$tmp/ids.json" | grep -q $'bad bytes: \xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd end'
# Errors: non-zero exit and a message naming the file and offset.
expect_fail() {  # expect_fail NEEDLE CMD...
  local needle=$1
  shift
  if "$@" > "$tmp/stdout" 2> "$tmp/stderr"; then echo "FAIL: succeeded: $*"; exit 1; fi
  grep -qF -- "$needle" "$tmp/stderr" || { echo "FAIL: '$needle' not in: $(cat "$tmp/stderr")"; exit 1; }
}
head -c 1000 "$tmp/tok.json" > "$tmp/trunc.json"
expect_fail "$tmp/trunc.json: offset 1000" "$cmoe" tokenizer encode --tokenizer "$tmp/trunc.json" --input "$tmp/in.txt"
printf '1 2 x3' > "$tmp/bad_ids.txt"
expect_fail "$tmp/bad_ids.txt: offset 4" "$cmoe" tokenizer decode --tokenizer "$tmp/tok.json" --input "$tmp/bad_ids.txt"
printf '[1, 99999]' > "$tmp/big_ids.json"
expect_fail "token id 99999 at position 1" "$cmoe" tokenizer decode --tokenizer "$tmp/tok.json" --input "$tmp/big_ids.json"
expect_fail "cannot open" "$cmoe" tokenizer encode --tokenizer "$tmp/missing.json" --input "$tmp/in.txt"
expect_fail "unknown subcommand" "$cmoe" tokenizer frobnicate
echo "tokenizer_cli_test: ok"
