#!/usr/bin/env bash
# End-to-end: the embedded mini-Pile from Debian packages to training steps.
#  1. scripts/build-mini-pile.sh builds it from scratch (jsonl.zst, tokenizer, shards) into the
#     test cache (tests/mini_pile_cache.sh: built once per set of inputs, shared by the Release and
#     ASan suites), and run again on the finished directory it changes nothing (idempotent);
#  2. the first training documents (`cmoe data inspect --docs 3 --json`) and the first document
#     of every other source (read from the .bin with numpy) decode with `cmoe tokenizer decode
#     --bytes` to exactly their source text in raw/train.jsonl followed by <|endoftext|>, and the
#     first validation document likewise;
#  3. counts agree: jsonl lines == dataset documents == <|endoftext|> tokens, every document
#     ends with it, every id is in the vocabulary, and the inspected token total is the sum of
#     the .idx lengths;
#  4. `cmoe train` (configs/tiny.textproto, vocabulary 8192) runs 5 steps with an evaluation on
#     the validation shard, and every logged loss is finite and near ln(8192) at the start.
# Usage: e2e_mini_pile.sh CMOE SOURCE_DIR WORKDIR CACHE_ROOT   (python: /usr/bin/python3 with numpy)
set -euo pipefail
cmoe=$(realpath "$1") src=$(realpath "$2") work=$3 cache=$4
python=/usr/bin/python3
rm -rf "$work"
mkdir -p "$work"
work=$(realpath "$work")

mp=$("$src/tests/mini_pile_cache.sh" "$cmoe" "$src" "$cache" 2> "$work/build.log" | tail -1) \
  || { echo "FAIL: build-mini-pile.sh"; cat "$work/build.log"; exit 1; }
grep -m1 '^mini_pile_cache' "$work/build.log"
for f in train.jsonl.zst val.jsonl.zst tokenizer.json raw/train.jsonl raw/val.jsonl \
         train_text_document.bin train_text_document.idx val_text_document.bin val_text_document.idx; do
  [[ -s $mp/$f ]] || { echo "FAIL: build-mini-pile.sh did not write $f"; exit 1; }
done
# Idempotent: a second run over the finished directory rewrites nothing.
before=$(cd "$mp" && find . -type f -printf '%p %s %T@\n' | sort)
CMOE_BIN=$cmoe "$src/scripts/build-mini-pile.sh" "$mp" > "$work/rebuild.log" 2>&1 \
  || { echo "FAIL: build-mini-pile.sh on a finished directory"; cat "$work/rebuild.log"; exit 1; }
[ "$before" = "$(cd "$mp" && find . -type f -printf '%p %s %T@\n' | sort)" ] \
  || { echo "FAIL: build-mini-pile.sh rewrote files of a finished mini-Pile"; exit 1; }

"$cmoe" data inspect "$mp/train_text_document" --docs 3 --json > "$work/train_inspect.json"
"$cmoe" data inspect "$mp/val_text_document" --docs 1 --json > "$work/val_inspect.json"

CMOE="$cmoe" MP="$mp" WORK="$work" PYTHONPATH="$src/tests/data" "$python" - <<'PY'
import json, os, subprocess, sys
try:
    import numpy as np
except ImportError:
    sys.exit("FAIL: numpy is not installed for /usr/bin/python3 (scripts/install-deps.sh installs python3-numpy)")
import megatron_ref

cmoe, mp, work = os.environ["CMOE"], os.environ["MP"], os.environ["WORK"]
tok = json.load(open(f"{mp}/tokenizer.json"))
eot = next(t["id"] for t in tok["added_tokens"] if t["content"] == "<|endoftext|>")
vocab = 8192

def decode(ids, name):
    path = f"{work}/{name}.ids"
    with open(path, "w") as f:
        json.dump(ids, f)
    return subprocess.run([cmoe, "tokenizer", "decode", "--tokenizer", f"{mp}/tokenizer.json", "--input", path,
                           "--bytes"], check=True, capture_output=True).stdout

def check_split(split, inspect_docs):
    records = [json.loads(l) for l in open(f"{mp}/raw/{split}.jsonl", encoding="utf-8")]
    prefix = f"{mp}/{split}_text_document"
    info = json.load(open(f"{work}/{split}_inspect.json"))
    dtype, lengths, pointers, doc_index = megatron_ref.read_idx(prefix)
    data = np.fromfile(prefix + ".bin", dtype=dtype)
    def doc_tokens(j):
        s = int(pointers[j]) // dtype.itemsize
        return data[s : s + int(lengths[j])].astype(np.int64).tolist()

    # (b) counts.
    n = len(records)
    assert info["documents"] == n == info["sequences"], f"{split}: {n} jsonl records, dataset {info['documents']} documents"
    assert info["tokens"] == int(lengths.astype(np.int64).sum()) == len(data), f"{split}: token totals disagree"
    assert list(doc_index) == list(range(n + 1)), f"{split}: not one sequence per document"
    ends = data[(pointers // dtype.itemsize + lengths - 1)]
    assert (ends == eot).all(), f"{split}: {int((ends != eot).sum())} documents do not end with <|endoftext|>"
    assert int((data == eot).sum()) == n, f"{split}: {int((data == eot).sum())} <|endoftext|> tokens for {n} documents"
    assert int(data.max()) < vocab and info["dtype"] == "uint16", f"{split}: id {int(data.max())} outside the vocabulary"

    # (a) decode back to the source text: the inspected documents, then the first of each source.
    assert [doc_tokens(j) for j in range(inspect_docs)] == info["document_tokens"], f"{split}: inspect != .bin"
    picks = list(range(inspect_docs))
    seen = set()
    for j, r in enumerate(records):
        name = r["meta"]["pile_set_name"]
        if name not in seen:
            seen.add(name)
            if j not in picks:
                picks.append(j)
    for j in picks:
        ids = info["document_tokens"][j] if j < inspect_docs else doc_tokens(j)
        want = records[j]["text"].encode("utf-8") + b"<|endoftext|>"
        got = decode(ids, f"{split}_{j}")
        if got != want:
            at = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
            sys.exit(f"FAIL: {split} document {j} ({records[j]['meta']['pile_set_name']}) decodes differently "
                     f"at byte {at}: got {got[at:at+40]!r}, want {want[at:at+40]!r}")
    print(f"{split}: {n} documents, {info['tokens']} tokens; decoded exactly: documents {picks} "
          f"(sources {sorted(seen)})")

check_split("train", 3)
check_split("val", 1)
PY

# (c) five training steps on it, evaluating on the validation shard at step 5.
"$cmoe" train --config "$src/configs/tiny.textproto" --set model.vocab_size=8192 \
  --set data.prefix="$mp/train_text_document" --set data.valid_prefix="$mp/val_text_document" \
  --set train.steps=5 --set train.eval_interval=5 --run-dir "$work/run" > "$work/train.log" 2>&1 \
  || { echo "FAIL: cmoe train on the mini-Pile"; cat "$work/train.log"; exit 1; }
"$python" - "$work/run/metrics.jsonl" <<'PY'
import json, math, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
train = [r for r in rows if "loss" in r and "step" in r and "val_loss" not in r]
steps = sorted({r["step"] for r in train})
assert len(steps) == 5, f"FAIL: logged steps {steps}, want 5"
losses = [r["loss"] for r in train]
assert all(math.isfinite(x) for x in losses), f"FAIL: non-finite loss {losses}"
assert abs(losses[0] - math.log(8192)) < 1.0, f"FAIL: first loss {losses[0]}, want about ln(8192) = {math.log(8192):.2f}"
evals = [r for r in rows if any(k.startswith("val") for k in r)]
assert evals, "FAIL: no validation record in metrics.jsonl"
print(f"train: 5 steps, loss {losses[0]:.3f} -> {losses[-1]:.3f}; eval {json.dumps(evals[-1])}")
PY
echo "e2e: mini-Pile built, decoded and trained on"
