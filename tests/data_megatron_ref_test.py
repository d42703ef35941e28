#!/usr/bin/python3
"""data_megatron_ref_test.py — `cmoe data samples` against the numpy reference (megatron_ref.py).

Generates Megatron datasets with make_test_dataset (uint16 and int32 tokens, several sizes) and,
for many (seq_length, num_samples, seed, split, split name) cases — one epoch, several epochs
shuffled together, several epochs with the last shuffled separately, the valid and test splits,
seeds 0 and 2^32-1 — asserts that cmoe's sample order, epoch facts and every sample's T+1 tokens
equal the reference exactly. numpy is required: without it the test fails (it never skips);
scripts/install-deps.sh installs python3-numpy.
Usage: data_megatron_ref_test.py CMOE MAKE_TEST_DATASET WORKDIR
"""
import json
import os
import subprocess
import sys

try:
    import numpy  # noqa: F401  (megatron_ref needs it; fail loudly here rather than skip)
except ImportError:
    sys.exit("FAIL: numpy is not installed for " + sys.executable +
             " (scripts/install-deps.sh installs python3-numpy); the numpy shuffle is the ground truth")

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "data"))
import megatron_ref  # noqa: E402


def make_dataset(tool, prefix, vocab, docs, seed):
    subprocess.run([tool, prefix, str(vocab), str(docs), str(seed)], check=True)
    return prefix


def split_tokens(prefix, split, name):
    _, lengths, _, _ = megatron_ref.read_idx(prefix)
    b, e = megatron_ref.split_range(split, len(lengths), name)
    return int(lengths[b:e].astype("int64").sum())


def cmoe_samples(cmoe, prefix, T, N, seed, split, name):
    out = subprocess.run([cmoe, "data", "samples", prefix, "--seq-length", str(T), "--num-samples", str(N),
                          "--seed", str(seed), "--split", split, "--split-name", name, "--json"],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def main():
    if len(sys.argv) != 4:
        sys.exit("usage: data_megatron_ref_test.py CMOE MAKE_TEST_DATASET WORKDIR")
    cmoe, tool, work = sys.argv[1:]
    os.makedirs(work, exist_ok=True)
    # make_test_dataset documents hold 50..249 tokens, the last one the end-of-document id.
    small = make_dataset(tool, os.path.join(work, "small_u16"), 8192, 40, 7)      # ~6k tokens, uint16
    mid = make_dataset(tool, os.path.join(work, "mid_u16"), 8192, 300, 11)        # ~45k tokens, uint16
    wide = make_dataset(tool, os.path.join(work, "wide_i32"), 70000, 60, 3)       # int32 tokens
    tiny = make_dataset(tool, os.path.join(work, "tiny_u16"), 512, 3, 5)          # 3 documents

    cases = []  # (prefix, T, N, seed, split, name, expected epochs, expected separate or None)

    def add(prefix, T, seed, split, name, epochs, fraction, separate):
        # N such that the last of `epochs` epochs is needed for `fraction` of its samples.
        tpe = split_tokens(prefix, split, name)
        per_epoch = (tpe - 1) // T
        sans_final = ((epochs - 1) * tpe - 1) // T if epochs > 1 else 0
        N = sans_final + max(1, int(fraction * per_epoch))
        cases.append((prefix, T, N, seed, split, name, epochs, separate))

    add(mid, 64, 1234, "969,30,1", "train", 1, 0.5, False)      # one epoch
    add(mid, 128, 0, "969,30,1", "train", 1, 0.99, False)       # one epoch, nearly all of it
    add(small, 32, 1234, "969,30,1", "train", 3, 0.3, True)     # last epoch shuffled separately
    add(small, 32, 42, "969,30,1", "train", 4, 0.9, False)      # several epochs shuffled together
    add(small, 17, 4294967295, "1", "train", 2, 0.1, True)      # seed 2^32-1, odd T
    add(mid, 50, 9, "90,5,5", "valid", 3, 0.5, True)            # valid split, several epochs
    add(mid, 50, 9, "90,5,5", "test", 1, 0.7, False)            # test split
    add(wide, 40, 1234, "98,2", "train", 2, 0.85, False)        # int32 tokens
    add(wide, 40, 77, "90,10", "valid", 5, 0.2, True)           # int32 tokens, 6-sequence split
    add(tiny, 8, 1234, "1", "train", 25, 0.5, True)             # 3 documents, many epochs
    add(tiny, 2, 3, "1", "train", 1, 0.25, False)               # T = 2, the smallest allowed
    add(mid, 2, 5, "1", "train", 3, 0.5, True)                  # ~69k samples: masks past 2^16

    # The 80% rule at its edge: the last epoch needed for int(0.8 * per_epoch) - 1 samples is
    # shuffled separately, for int(0.8 * per_epoch) it is not.
    for from_final, separate in ((None, True), (0, False)):
        tpe = split_tokens(small, "969,30,1", "train")
        per_epoch, sans_final = (tpe - 1) // 24, (2 * tpe - 1) // 24
        edge = int(0.80 * per_epoch) + (-1 if from_final is None else 0)
        cases.append((small, 24, sans_final + edge, 8, "969,30,1", "train", 3, separate))

    # Zero-length sequences and a multi-sequence document (tests/fixtures/megatron_tiny).
    fixture = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "megatron_tiny")
    cases.append((fixture, 2, 4, 1234, "1", "train", 2, False))
    cases.append((fixture, 2, 7, 99, "1", "train", 3, False))

    failures = 0
    covered = set()
    for prefix, T, N, seed, split, name, epochs, separate in cases:
        label = f"{os.path.basename(prefix)} T={T} N={N} seed={seed} split={split} {name}"
        ref = megatron_ref.reference(prefix, T, N, seed, split, name)
        got = cmoe_samples(cmoe, prefix, T, N, seed, split, name)
        # The case must exercise what it is meant to (guards the N arithmetic above).
        assert ref["epochs"] == epochs, f"{label}: reference gives {ref['epochs']} epochs, case wants {epochs}"
        assert ref["separate_final_epoch"] == separate, f"{label}: reference separate={ref['separate_final_epoch']}"
        covered.add((epochs > 1, separate))
        problems = []
        for key in ("sequence_range", "epochs", "separate_final_epoch", "total_samples"):
            if got[key] != ref[key]:
                problems.append(f"{key}: cmoe {got[key]} reference {ref[key]}")
        if len(got["samples"]) != len(ref["samples"]):
            problems.append(f"cmoe printed {len(got['samples'])} samples, reference {len(ref['samples'])}")
        for g, r in zip(got["samples"], ref["samples"]):
            if g != r:
                problems.append(f"first difference at k={r['k']}: cmoe sample {g['sample']} tokens {g['tokens'][:8]}..., "
                                f"reference sample {r['sample']} tokens {r['tokens'][:8]}...")
                break
        if problems:
            failures += 1
            print(f"MISMATCH {label}:\n  " + "\n  ".join(problems))
        else:
            print(f"ok {label}: epochs={ref['epochs']} separate={ref['separate_final_epoch']} "
                  f"samples {len(ref['samples'])} of {ref['total_samples']}")
    assert covered == {(False, False), (True, False), (True, True)}, covered
    if failures:
        sys.exit(f"FAIL: {failures} of {len(cases)} cases differ from the numpy reference")
    print(f"all {len(cases)} cases match the numpy reference")


if __name__ == "__main__":
    main()
