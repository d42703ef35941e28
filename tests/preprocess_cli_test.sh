#!/usr/bin/env bash
# `cmoe preprocess` through the binary: the documented `--input FILE...` form (several files
# after one flag) gives the same dataset as repeating the flag; an input with no documents is
# an error that writes nothing; a directory given as --tokenizer is reported as a directory,
# not as a JSON error; --valid-every that leaves the validation output empty says so.
# Usage: preprocess_cli_test.sh CMOE SOURCE_DIR
set -euo pipefail
cmoe=$1 src=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
tok="$src/tests/data/gpt2_subset.tokenizer.json"
printf 'The quick brown fox.\n' > "$work/a.txt"
printf '{"text": "jumps over"}\n\n{"text": "the lazy dog"}\n' > "$work/b.jsonl"

# --input A B (documented form) and --input A --input B: the same bytes, 3 documents.
"$cmoe" preprocess --input "$work/a.txt" "$work/b.jsonl" --tokenizer "$tok" --output-prefix "$work/multi" \
  > "$work/multi.log" 2>&1 || { cat "$work/multi.log"; fail "--input A B refused"; }
grep -q "^preprocess: 3 documents" "$work/multi.log" || { cat "$work/multi.log"; fail "--input A B: not 3 documents"; }
"$cmoe" preprocess --input "$work/a.txt" --input "$work/b.jsonl" --tokenizer "$tok" --output-prefix "$work/rep" \
  > "$work/rep.log" 2>&1 || { cat "$work/rep.log"; fail "--input A --input B refused"; }
cmp "$work/multi.bin" "$work/rep.bin" && cmp "$work/multi.idx" "$work/rep.idx" || fail "--input A B differs from --input A --input B"
"$cmoe" data inspect "$work/multi" --json | grep -q '"documents": 3' || fail "data inspect of the --input A B output"
echo "ok: --input A B = --input A --input B (3 documents)"

# An input with no documents: exit 1, the files named, nothing written.
: > "$work/empty.jsonl"
printf '\n\n' > "$work/blank.jsonl"
rc=0
"$cmoe" preprocess --input "$work/empty.jsonl" "$work/blank.jsonl" --tokenizer "$tok" --output-prefix "$work/none" \
  > "$work/none.log" 2>&1 || rc=$?
[ "$rc" = 1 ] || { cat "$work/none.log"; fail "empty input: exit $rc, expected 1"; }
grep -q "no documents in $work/empty.jsonl, $work/blank.jsonl .*nothing written" "$work/none.log" \
  || { cat "$work/none.log"; fail "empty input: message"; }
[ -z "$(ls "$work" | grep -E '^none\.(bin|idx)')" ] || fail "empty input wrote $(ls "$work" | grep '^none')"
echo "ok: empty input refused: $(cat "$work/none.log")"

# A directory as --tokenizer: named as a directory, exit 1.
rc=0
"$cmoe" preprocess --input "$work/a.txt" --tokenizer "$work" --output-prefix "$work/dir" > "$work/dir.log" 2>&1 || rc=$?
[ "$rc" = 1 ] || { cat "$work/dir.log"; fail "directory tokenizer: exit $rc"; }
grep -q "$work: is a directory; expected a tokenizer.json file" "$work/dir.log" || { cat "$work/dir.log"; fail "directory tokenizer: message"; }
if grep -qi json.*parse "$work/dir.log"; then fail "directory tokenizer reported as a JSON error: $(cat "$work/dir.log")"; fi
echo "ok: directory as --tokenizer: $(cat "$work/dir.log")"

# --valid-every larger than the document count: the train output is written, and the empty
# validation output is reported.
"$cmoe" preprocess --input "$work/a.txt" "$work/b.jsonl" --tokenizer "$tok" --output-prefix "$work/split" --valid-every 5 \
  > "$work/split.log" 2>&1 || { cat "$work/split.log"; fail "--valid-every 5"; }
grep -q "note: 3 documents and --valid-every 5: none reaches $work/split_valid" "$work/split.log" \
  || { cat "$work/split.log"; fail "--valid-every 5: no note about the empty validation output"; }
[ -e "$work/split_train.idx" ] && [ ! -e "$work/split_valid.idx" ] || fail "--valid-every 5 outputs"
echo "ok: empty validation output reported"
