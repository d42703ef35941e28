#!/usr/bin/python3
"""data_llmc_test.py — llm.c token shards as training data, through the cmoe binary.

The shards are written here with numpy by llm.c's rules (dev/data/data_common.py write_datafile:
a header of 256 int32 = [20240520, 1, n, 0, ...], then n uint16 tokens; each document preceded
by <|endoftext|> = 50256; fineweb.py fills shards of a fixed size and carries a document that does
not fit over into the next shard). Nothing here uses cmoe's reader. Checked:
  1. `cmoe data inspect GLOB --json`: shard count, token total, and the document count (one per
     delimiter plus one per shard that starts mid-document) computed from the written stream;
  2. `cmoe data samples GLOB --json` equals tests/data/megatron_ref.py (numpy's shuffle as ground
     truth) over the documents cut here from the stream, for several (T, N, seed, split) cases;
  3. `cmoe train` from a blend of a Megatron prefix (weight 2) and the llm.c glob (weight 1), with
     an llm.c shard as validation data, logs exactly the same per-step losses and validation loss
     as the same run where the glob and the validation shard are replaced by Megatron datasets
     holding the same documents (written here with numpy in Megatron's .bin/.idx layout);
  4. a model vocabulary smaller than the shards' ids is refused (exit 1) with a message naming the
     shard and a byte offset whose two bytes hold the reported id.
numpy is required: without it the test fails (it never skips).
Usage: data_llmc_test.py CMOE MAKE_TEST_DATASET CONFIG WORKDIR
"""
import json
import os
import re
import shutil
import struct
import subprocess
import sys

try:
    import numpy as np
except ImportError:
    sys.exit("FAIL: numpy is not installed for " + sys.executable + " (scripts/install-deps.sh installs python3-numpy)")

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "data"))
import megatron_ref  # noqa: E402

EOT = 50256
SHARD_TOKENS = 6000  # small shards, so documents straddle shard boundaries


def write_llmc(path, tokens):
    """llm.c's write_datafile for GPT-2 tokens."""
    header = np.zeros(256, dtype="<i4")
    header[0], header[1], header[2] = 20240520, 1, len(tokens)
    with open(path, "wb") as f:
        f.write(header.tobytes())
        f.write(np.asarray(tokens, dtype="<u2").tobytes())


def write_megatron(prefix, docs):
    """Megatron MMIDIDX v1, uint16 (dtype code 8): one single-sequence document per entry."""
    lengths = np.array([len(d) for d in docs], dtype="<i4")
    pointers = np.concatenate(([0], np.cumsum(lengths.astype(np.int64) * 2)[:-1])).astype("<i8")
    with open(prefix + ".bin", "wb") as f:
        for d in docs:
            f.write(np.asarray(d, dtype="<u2").tobytes())
    with open(prefix + ".idx", "wb") as f:
        f.write(b"MMIDIDX\x00\x00" + struct.pack("<Q", 1) + struct.pack("<B", 8))
        f.write(struct.pack("<QQ", len(docs), len(docs) + 1))
        f.write(lengths.tobytes() + pointers.tobytes() + np.arange(len(docs) + 1, dtype="<i8").tobytes())


def make_documents(n, seed):
    """Documents of a learnable pattern (ids walking by +1/+2 over [0, 50256))."""
    rs = np.random.RandomState(seed)
    docs = []
    for _ in range(n):
        length = int(rs.randint(20, 200))
        start = int(rs.randint(0, 50256))
        steps = rs.randint(1, 3, size=length)
        docs.append(((start + np.cumsum(steps)) % 50256).astype(np.int64))
    return docs


def write_shards(directory, name, split, docs, first_index):
    """fineweb.py's sharding: EOT + document appended to a buffer of SHARD_TOKENS; a full buffer is
    written and the document's remainder starts the next one. Returns (paths, stream, cut points)."""
    stream = np.concatenate([np.concatenate(([EOT], d)) for d in docs]).astype(np.int64)
    paths, cuts = [], []
    for i, at in enumerate(range(0, len(stream), SHARD_TOKENS)):
        path = os.path.join(directory, f"{name}_{split}_{first_index + i:06d}.bin")
        write_llmc(path, stream[at:at + SHARD_TOKENS])
        paths.append(path)
        cuts.append(at)
    return paths, stream, cuts


def cut_documents(stream, cuts):
    """Documents as cmoe must cut them: before every EOT and at every shard start."""
    starts = sorted(set(np.flatnonzero(stream == EOT).tolist()) | set(cuts))
    return [stream[a:b] for a, b in zip(starts, starts[1:] + [len(stream)])]


def run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        sys.exit(f"FAIL: {' '.join(cmd)} exited {r.returncode}\n{r.stdout}\n{r.stderr}")
    return r.stdout


def losses(run_dir):
    rows = [json.loads(l) for l in open(os.path.join(run_dir, "metrics.jsonl")) if l.strip()]
    train = [(r["step"], r["loss"]) for r in rows if "loss" in r and "val_loss" not in r]
    val = [(r["step"], r["val_loss"]) for r in rows if "val_loss" in r]
    return train, val


def main():
    if len(sys.argv) != 5:
        sys.exit("usage: data_llmc_test.py CMOE MAKE_TEST_DATASET CONFIG WORKDIR")
    cmoe, make_dataset, config, work = sys.argv[1:]
    shutil.rmtree(work, ignore_errors=True)
    shards = os.path.join(work, "shards")
    os.makedirs(shards)
    failures = []

    # llm.c's layout: shard 0 is validation, the rest training.
    val_paths, val_stream, val_cuts = write_shards(shards, "web", "val", make_documents(30, 1), 0)
    train_paths, stream, cuts = write_shards(shards, "web", "train", make_documents(300, 2), 1)
    assert len(val_paths) == 1 and len(train_paths) >= 4, (len(val_paths), len(train_paths))
    mid = sum(1 for c in cuts if stream[c] != EOT)
    assert mid >= 2, "no document straddles a shard boundary; change SHARD_TOKENS"
    docs = cut_documents(stream, cuts)
    glob = os.path.join(shards, "web_train_*.bin")

    # 1. inspect
    info = json.loads(run([cmoe, "data", "inspect", glob, "--json"]))
    want = {"format": "llmc", "kind": "gpt2", "shards": len(train_paths), "tokens": len(stream),
            "num_documents": 300 + mid, "delimiter": EOT}
    got = {k: info.get(k) for k in want}
    if got != want:
        failures.append(f"inspect: {got}, expected {want}")
    assert len(docs) == 300 + mid

    # 2. samples against the numpy reference over the documents cut here
    for T, N, seed, split, name in [(64, 200, 1234, "969,30,1", "train"), (31, 900, 7, "90,10", "train"),
                                    (16, 50, 3, "90,10", "valid"), (128, 5, 4294967295, "1", "train")]:
        ref = megatron_ref.reference_sequences(docs, T, N, seed, split, name)
        out = json.loads(run([cmoe, "data", "samples", glob, "--seq-length", str(T), "--num-samples", str(N),
                              "--seed", str(seed), "--split", split, "--split-name", name, "--json"]))
        for key in ("sequence_range", "epochs", "separate_final_epoch", "total_samples"):
            if out[key] != ref[key]:
                failures.append(f"samples T={T} N={N}: {key} {out[key]} != reference {ref[key]}")
        if out["samples"] != ref["samples"]:
            bad = next(i for i, (a, b) in enumerate(zip(out["samples"], ref["samples"])) if a != b)
            failures.append(f"samples T={T} N={N} seed={seed} {split} {name}: sample {bad} differs: "
                            f"{out['samples'][bad]} vs reference {ref['samples'][bad]}")
    print(f"llm.c glob: {len(train_paths)} shards, {len(stream)} tokens, {len(docs)} documents "
          f"({mid} shard starts mid-document); inspect and 4 sample orders equal the reference")

    # 3. training from a blend, against the Megatron twin of the same documents
    books = os.path.join(work, "books")
    run([make_dataset, books, "512", "200", "5"])
    write_megatron(os.path.join(work, "web_same"), docs)
    write_megatron(os.path.join(work, "web_val_same"), cut_documents(val_stream, val_cuts))
    base = open(config).read()
    if re.search(r"^data\s*{", base, re.M):
        sys.exit(f"FAIL: {config} already has a data section; this test appends its own")

    def train(name, second, valid):
        cfg = os.path.join(work, name + ".textproto")
        with open(cfg, "w") as f:
            f.write(base + f'\ndata {{\n  sources {{ prefix: "{books}" weight: 2 }}\n'
                           f'  sources {{ prefix: "{second}" weight: 1 }}\n'
                           f'  valid_prefix: "{valid}"\n  valid_split: "0,1,0"\n}}\n')
        run_dir = os.path.join(work, name)
        log = run([cmoe, "train", "--config", cfg, "--run-dir", run_dir, "--set", "model.vocab_size=50304",
                   "--set", "train.steps=6", "--set", "train.eval_interval=3", "--set", "checkpoint.interval=0",
                   "--set", "train.precision=f32"], env=dict(os.environ, OMP_NUM_THREADS="1"))
        return losses(run_dir), log, cfg

    (l_train, l_val), _, llmc_cfg = train("llmc", glob, val_paths[0])
    (m_train, m_val), _, _ = train("megatron", os.path.join(work, "web_same"), os.path.join(work, "web_val_same"))
    if len(l_train) != 6 or len(l_val) < 2:
        failures.append(f"train on the llm.c blend logged {len(l_train)} steps and {len(l_val)} evaluations")
    if (l_train, l_val) != (m_train, m_val):
        failures.append(f"llm.c blend vs Megatron twin: train {l_train} vs {m_train}; val {l_val} vs {m_val}")
    else:
        print(f"train: blend of a Megatron prefix and the llm.c glob, llm.c validation shard: 6 losses "
              f"{l_train[0][1]:.4f} .. {l_train[-1][1]:.4f} and val {l_val[-1][1]:.4f}, equal to the Megatron twin's")

    # 4. vocabulary too small for the shards' ids
    r = subprocess.run([cmoe, "train", "--config", llmc_cfg, "--run-dir", os.path.join(work, "small_vocab"),
                        "--set", "model.vocab_size=50000", "--set", "train.steps=6"], capture_output=True, text=True)
    m = re.search(r"(\S+web_train_\d+\.bin): at byte (\d+): .*found token id (\d+), expected an id in \[0, 50000\)",
                  r.stderr)
    if r.returncode != 1 or not m:
        failures.append(f"vocab 50000: exit {r.returncode}, stderr {r.stderr.strip()!r}")
    else:
        path, offset, tok = m.group(1), int(m.group(2)), int(m.group(3))
        with open(path, "rb") as f:
            f.seek(offset)
            stored = struct.unpack("<H", f.read(2))[0]
        if stored != tok or tok < 50000:
            failures.append(f"vocab error names {path} byte {offset} holding {stored}, message says {tok}")
        else:
            print(f"vocab 50000 refused: {os.path.basename(path)} at byte {offset} holds id {tok}")

    if failures:
        print("data_llmc_test: FAIL", *failures, sep="\n  ", file=sys.stderr)
        sys.exit(1)
    shutil.rmtree(work, ignore_errors=True)
    print("data_llmc_test: llm.c shards read, sampled and trained on as the equivalent Megatron data")


if __name__ == "__main__":
    main()
