#!/usr/bin/env bash
# `cmoe generate` end to end on a briefly trained tiny checkpoint and a small BPE tokenizer:
#  - greedy (--temperature 0) is deterministic; the streamed stdout is exactly the bytes of the
#    --json output's tokens; a prompt gives the same greedy tokens alone or as a line of --input;
#  - seeded sampling repeats with the same --seed and changes with another;
#  - --input: one delimited stream per line, in order; an empty line starts from <|endoftext|>;
#  - stderr: the seed, prefill and decode tokens/s; stdout: only the text;
#  - errors: a prompt longer than model.seq_len, a tokenizer larger than the model's vocabulary,
#    a missing checkpoint (exit 1, nothing generated); bad flags (exit 2).
# Usage: generate_cli_test.sh CMOE MAKE_DATASET CONFIG SOURCE_DIR
set -euo pipefail
cmoe=$1 make_dataset=$2 config=$3 src=$4
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export OMP_NUM_THREADS=1
fail() { echo "FAIL: $*"; exit 1; }
"$make_dataset" "$work/data" 512 100 7
"$cmoe" train --config "$config" --set data.prefix="$work/data" --set train.steps=3 --set checkpoint.interval=3 \
  --set train.eval_interval=1000 --run-dir "$work/run" > "$work/train.log"
"$cmoe" tokenizer train --input "$src/tests/data/tokenizer_corpus.txt" --vocab-size 300 --output "$work/tok.json" > /dev/null
ck="$work/run/checkpoints"
gen() { "$cmoe" generate --checkpoint "$ck" --tokenizer "$work/tok.json" "$@"; }
field() { sed -E "s/.*\"$1\": (\[[^]]*\]|\"[^\"]*\"|[0-9.]+).*/\1/" "$2"; }

# Greedy: deterministic, streamed bytes = the JSON tokens' bytes.
gen --prompt "The quick brown fox" --temperature 0 --max-new-tokens 12 --json > "$work/g1.json" 2> "$work/g1.err"
gen --prompt "The quick brown fox" --temperature 0 --max-new-tokens 12 --json > "$work/g2.json" 2> /dev/null
[ "$(field tokens "$work/g1.json")" = "$(field tokens "$work/g2.json")" ] || fail "greedy output differs between two runs"
[ "$(wc -l < "$work/g1.json")" = 1 ] || fail "--prompt --json printed $(wc -l < "$work/g1.json") lines"
n=$(field new_tokens "$work/g1.json")
stop=$(field stop "$work/g1.json")
{ [ "$n" = 12 ] && [ "$stop" = '"max_new_tokens"' ]; } || [ "$stop" = '"stop_token"' ] || fail "new_tokens $n, stop $stop"
field tokens "$work/g1.json" > "$work/g1.ids"
gen --prompt "The quick brown fox" --temperature 0 --max-new-tokens 12 > "$work/g1.txt" 2> "$work/g1s.err"
"$cmoe" tokenizer decode --tokenizer "$work/tok.json" --input "$work/g1.ids" --bytes > "$work/g1.bytes"
printf '\n' >> "$work/g1.bytes"
cmp -s "$work/g1.txt" "$work/g1.bytes" || fail "streamed text is not the bytes of the generated tokens"
grep -q "seed 1234" "$work/g1s.err" || fail "the seed is not logged: $(cat "$work/g1s.err")"
grep -Eq "prompt 1: [0-9]+ prompt tokens, prefill [0-9.]+ s \([0-9.]+ tokens/s\); [0-9]+ new tokens, decode [0-9.]+ s \([0-9.]+ tokens/s" \
  "$work/g1s.err" || fail "no prefill/decode tokens/s on stderr: $(cat "$work/g1s.err")"
echo "ok: greedy deterministic ($n tokens, stop $stop); stdout is the tokens' bytes; seed and tokens/s on stderr"

# Seeded sampling.
sample() { gen --prompt "Once upon" --temperature 1.0 --top-k 50 --top-p 0.95 --max-new-tokens 16 --json "$@" 2> /dev/null; }
sample --seed 7 > "$work/s7a.json"
sample --seed 7 > "$work/s7b.json"
sample --seed 8 > "$work/s8.json"
[ "$(field tokens "$work/s7a.json")" = "$(field tokens "$work/s7b.json")" ] || fail "the same --seed gave different samples"
[ "$(field tokens "$work/s7a.json")" != "$(field tokens "$work/s8.json")" ] || fail "--seed 7 and --seed 8 gave the same tokens"
echo "ok: --seed 7 twice: same tokens; --seed 8: different"

# --input: one stream per line, delimited and in order; the greedy tokens of line 2 are those of
# the same text given with --prompt.
printf 'Hello there\nThe quick brown fox\n\n' > "$work/prompts.txt"
gen --input "$work/prompts.txt" --temperature 0 --max-new-tokens 12 --json > "$work/batch.json" 2> "$work/batch.err"
[ "$(wc -l < "$work/batch.json")" = 3 ] || fail "--input of 3 lines gave $(wc -l < "$work/batch.json") JSON lines"
[ "$(grep -o '"index": [0-9]*' "$work/batch.json" | tr '\n' ' ')" = '"index": 1 "index": 2 "index": 3 ' ] \
  || fail "JSON records out of order: $(cat "$work/batch.json")"
[ "$(sed -n 2p "$work/batch.json" | sed -E 's/.*"tokens": (\[[^]]*\]).*/\1/')" = "$(cat "$work/g1.ids")" ] \
  || fail "line 2 of --input and the same --prompt give different greedy tokens"
grep -q '"index": 3, "prompt": "", ' "$work/batch.json" || fail "the empty line was not generated"
grep -q "total: 3 prompts" "$work/batch.err" || fail "no total line: $(cat "$work/batch.err")"
gen --input "$work/prompts.txt" --temperature 0 --max-new-tokens 12 > "$work/batch.txt" 2> /dev/null
[ "$(grep -c '^--- prompt [0-9]* ---$' "$work/batch.txt")" = 3 ] || fail "expected 3 delimiters: $(cat "$work/batch.txt")"
[ "$(grep '^--- prompt' "$work/batch.txt" | tr '\n' ' ')" = "--- prompt 1 --- --- prompt 2 --- --- prompt 3 --- " ] \
  || fail "streams out of order"
echo "ok: --input: 3 delimited streams in order; line 2 equals --prompt; an empty line generates"

gen --prompt "The quick" --temperature 0 --max-new-tokens 4 --disable-top1 > /dev/null 2> "$work/d1.err" \
  || fail "--disable-top1 on a cartesian checkpoint: $(cat "$work/d1.err")"
grep -q "disable_top1" "$work/d1.err" || fail "--disable-top1 not reported"

# Bad input: exit 1 with the reason, and nothing generated.
expect_exit() {  # expect_exit CODE NEEDLE ARGS...
  local code=$1 needle=$2 rc=0
  shift 2
  "$cmoe" generate "$@" > "$work/e.out" 2> "$work/e.err" || rc=$?
  [ "$rc" = "$code" ] || fail "exit $rc (expected $code) for: $* -- $(cat "$work/e.err")"
  grep -qF -- "$needle" "$work/e.err" || fail "'$needle' not in: $(cat "$work/e.err")"
  [ "$code" != 1 ] || [ ! -s "$work/e.out" ] || fail "output despite the error: $(cat "$work/e.out")"
}
long=$(printf 'word %.0s' $(seq 1 40))
printf 'Hello\n%s\n' "$long" > "$work/long.txt"
expect_exit 1 "line 2 is " --checkpoint "$ck" --tokenizer "$work/tok.json" --input "$work/long.txt"
expect_exit 1 "longer than the model's context (model.seq_len = 32)" --checkpoint "$ck" --tokenizer "$work/tok.json" --prompt "$long"
expect_exit 1 "no-such-dir" --checkpoint "$work/no-such-dir" --tokenizer "$work/tok.json" --prompt hi
expect_exit 1 "no-such.json" --checkpoint "$ck" --tokenizer "$work/no-such.json" --prompt hi
"$make_dataset" "$work/small" 280 40 7
"$cmoe" train --config "$config" --set data.prefix="$work/small" --set model.vocab_size=280 --set train.steps=1 \
  --set checkpoint.interval=1 --set train.eval_interval=1000 --run-dir "$work/small_run" > /dev/null
expect_exit 1 "has 300 ids, more than the model's vocab_size 280" --checkpoint "$work/small_run/checkpoints" \
  --tokenizer "$work/tok.json" --prompt hi
# Usage errors: exit 2.
expect_exit 2 "exactly one of --prompt" --checkpoint "$ck" --tokenizer "$work/tok.json"
expect_exit 2 "exactly one of --prompt" --checkpoint "$ck" --tokenizer "$work/tok.json" --prompt a --input "$work/prompts.txt"
expect_exit 2 "--temperature -1" --checkpoint "$ck" --tokenizer "$work/tok.json" --prompt a --temperature -1
expect_exit 2 "--top-p 0" --checkpoint "$ck" --tokenizer "$work/tok.json" --prompt a --top-p 0
expect_exit 2 "--top-k -2" --checkpoint "$ck" --tokenizer "$work/tok.json" --prompt a --top-k -2
expect_exit 2 "--max-new-tokens 0" --checkpoint "$ck" --tokenizer "$work/tok.json" --prompt a --max-new-tokens 0
expect_exit 2 "--seed x" --checkpoint "$ck" --tokenizer "$work/tok.json" --prompt a --seed x
expect_exit 2 "--tokenizer is required" --checkpoint "$ck" --prompt a
expect_exit 2 "bogus" --checkpoint "$ck" --tokenizer "$work/tok.json" --prompt a --bogus
echo "ok: too-long prompt, oversized tokenizer, missing files refused (exit 1, no output); bad flags exit 2"
