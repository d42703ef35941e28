#!/usr/bin/env bash
# tokenizer_vs_spm.sh — cmoe's byte-level BPE against SentencePiece's BPE on the same text and
# vocabulary size: training time and encode throughput, per core, measured in the same run.
#
#   bench/tokenizer_vs_spm.sh [TEXT_FILE] [VOCAB_SIZE]
# Default text: the KJV Bible from Debian's bible-kjv (as in docs/data.md's mini-Pile), verse
# numbers dropped, 4.2 MB. Needs: build/bin/cmoe and build/bin/tokenizer_bench (ninja -C build
# cmoe tokenizer_bench), and `apt-get install sentencepiece bible-kjv`.
# Both tools run command line to command line (file in, ids out) with 1 thread, then with 2;
# tokenizer_bench adds cmoe's library-level numbers (no file I/O or id printing).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
vocab=${2:-8192}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for tool in spm_train spm_encode; do
  command -v $tool >/dev/null || { echo "tokenizer_vs_spm: $tool missing (apt-get install sentencepiece)"; exit 2; }
done
if [[ $# -ge 1 ]]; then
  text=$1
else
  command -v bible >/dev/null || { echo "tokenizer_vs_spm: bible missing (apt-get install bible-kjv)"; exit 2; }
  text=$work/kjv.txt
  bible -l100000 'Gen1:1-Rev22:21' | sed -E 's/^ +[0-9]+ //' > "$text"
fi
cmoe=$root/build/bin/cmoe
mb=$(python3 -c "import os,sys; print(os.path.getsize(sys.argv[1]) / 1e6)" "$text")
secs() { local t0 t1; t0=$(date +%s.%N); "$@" > /dev/null 2>&1; t1=$(date +%s.%N); python3 -c "print(f'{$t1 - $t0:.3f}')"; }
echo "text: $text ($mb MB), vocab $vocab, $(nproc) cores, load average $(cut -d' ' -f1 /proc/loadavg)"
printf '%-34s %10s %10s\n' "step" "seconds" "MB/s"
row() { printf '%-34s %10s %10s\n' "$1" "$2" "$(python3 -c "print(f'{$mb / $2:.1f}')")"; }
for threads in 1 2; do
  t=$(secs "$cmoe" tokenizer train --input "$text" --vocab-size "$vocab" --output "$work/cmoe.json" --threads $threads)
  row "cmoe train (threads=$threads)" "$t"
  t=$(secs spm_train --input="$text" --model_prefix="$work/spm" --vocab_size="$vocab" --model_type=bpe \
    --character_coverage=1.0 --max_sentence_length=1000000 --num_threads=$threads)
  row "spm_train bpe (threads=$threads)" "$t"
done
t=$(secs "$cmoe" tokenizer encode --tokenizer "$work/cmoe.json" --input "$text")
row "cmoe encode (1 thread)" "$t"
t=$(secs spm_encode --model="$work/spm.model" --output_format=id --input="$text")
row "spm_encode (1 thread)" "$t"
echo "tokens: cmoe $("$cmoe" tokenizer encode --tokenizer "$work/cmoe.json" --input "$text" | wc -w)," \
  "spm $(spm_encode --model="$work/spm.model" --output_format=id --input="$text" | wc -w)"
echo "--- cmoe library (tokenizer_bench) ---"
"$root/build/bin/tokenizer_bench" --text "$text" --vocab-size "$vocab"
