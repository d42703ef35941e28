#!/usr/bin/python3
"""megatron_ref.py — an independent numpy reference of Megatron-core's GPT dataset sample order.

Written from docs/data.md (the Megatron .bin/.idx and GPT-dataset sections) (and megatron/core/datasets/gpt_dataset.py), sharing no code
with cmoe: the .idx is parsed with numpy.frombuffer at the documented offsets, the shuffles are
numpy.random.RandomState(seed).shuffle itself (the ground truth cmoe's C++ MT19937 must match),
and a sample's tokens are cut from the concatenated document stream by position rather than by
Megatron's sample-index walk, so the two sides compute each answer in different ways.

Library use: `reference(prefix, seq_length, num_samples, seed, split, split_name)` returns a dict
shaped like `cmoe data samples --json`; `reference_sequences(sequences, ...)` does the same for
sequences given as arrays (llm.c shards cut into documents, tests/data_llmc_test.py). Command line: megatron_ref.py PREFIX T N SEED SPLIT NAME
prints that dict as JSON.
"""
import json
import sys

import numpy as np

_MAGIC = b"MMIDIDX\x00\x00"
# Token dtype codes common to Megatron-core and GPT-NeoX (docs/data.md).
_DTYPES = {1: np.uint8, 2: np.int8, 3: np.int16, 4: np.int32, 5: np.int64, 8: np.uint16}
_SPLIT_NAMES = {"train": 0, "valid": 1, "validation": 1, "val": 1, "test": 2}


def read_idx(prefix):
    """Returns (dtype, sequence lengths int32[S], sequence pointers int64[S], document index)."""
    buf = open(prefix + ".idx", "rb").read()
    assert buf[:9] == _MAGIC, f"{prefix}.idx: bad magic {buf[:9]!r}"
    version = int(np.frombuffer(buf, dtype="<u8", count=1, offset=9)[0])
    assert version == 1, f"{prefix}.idx: version {version}"
    code = buf[17]
    assert code in _DTYPES, f"{prefix}.idx: dtype code {code}"
    s = int(np.frombuffer(buf, dtype="<u8", count=1, offset=18)[0])
    d1 = int(np.frombuffer(buf, dtype="<u8", count=1, offset=26)[0])
    assert len(buf) == 34 + 12 * s + 8 * d1, f"{prefix}.idx: size {len(buf)}"
    lengths = np.frombuffer(buf, dtype="<i4", count=s, offset=34)
    pointers = np.frombuffer(buf, dtype="<i8", count=s, offset=34 + 4 * s)
    doc_index = np.frombuffer(buf, dtype="<i8", count=d1, offset=34 + 12 * s)
    return np.dtype(_DTYPES[code]).newbyteorder("<"), lengths, pointers, doc_index


def split_range(split, num_sequences, split_name):
    """Megatron-core's split: weights normalised with numpy (float64), bookends accumulated in
    Python floats, split i = [round(b_i * n), round(b_{i+1} * n)); None when its bookends meet."""
    weights = [float(w) for w in split.split(",")]
    weights += [0.0] * (3 - len(weights))
    a = np.array(weights, dtype=np.float64)
    weights = (a / np.sum(a)).tolist()
    bookends = [0.0]
    for w in weights:
        bookends.append(bookends[-1] + w)
    i = _SPLIT_NAMES[split_name]
    if bookends[i + 1] <= bookends[i]:
        return None
    n = float(num_sequences)
    return int(round(bookends[i] * n)), int(round(bookends[i + 1] * n))


def read_sequences(prefix):
    """The dataset's sequences as a list of int64 numpy arrays, cut from the .bin at the .idx's
    pointers and lengths."""
    dtype, lengths, pointers, _ = read_idx(prefix)
    tokens_bin = np.fromfile(prefix + ".bin", dtype=np.uint8)
    return [tokens_bin[int(p) : int(p) + int(n) * dtype.itemsize].view(dtype).astype(np.int64)
            for p, n in zip(pointers, lengths)]


def reference(prefix, seq_length, num_samples, seed, split="969,30,1", split_name="train", max_samples=None):
    return reference_sequences(read_sequences(prefix), seq_length, num_samples, seed, split, split_name, max_samples)


def reference_sequences(sequences, seq_length, num_samples, seed, split="969,30,1", split_name="train",
                        max_samples=None):
    """`reference` for sequences given as a list of 1-D integer arrays (any source format)."""
    lengths = np.array([len(q) for q in sequences], dtype=np.int32)
    rng_ = split_range(split, len(lengths), split_name)
    assert rng_ is not None, f"split {split} has no {split_name} part"
    begin, end = rng_
    ids = np.arange(begin, end, dtype=np.int32)
    T = seq_length

    # 1. tokens per epoch; E = smallest epoch count covering N*T + 1 tokens.
    tpe = int(np.sum(lengths[ids].astype(np.int64)))
    epochs = 1
    while epochs * tpe < num_samples * T + 1:
        epochs += 1
    # The last epoch is shuffled separately when it is needed for fewer than 80% of its samples.
    separate = False
    sans_final = 0
    if epochs > 1:
        sans_final = ((epochs - 1) * tpe - 1) // T
        from_final = num_samples - sans_final
        per_epoch = (tpe - 1) // T
        assert 0 <= from_final <= per_epoch + 1
        separate = from_final < int(0.80 * per_epoch)

    # 2-3. One RandomState stream; document_index = ids repeated E times, shuffled.
    rs = np.random.RandomState(seed)

    def repeated(e):
        di = np.tile(ids, e).astype(np.int32)
        rs.shuffle(di)
        return di

    if separate:
        document_index = np.concatenate((repeated(epochs - 1), repeated(1)))
    else:
        document_index = repeated(epochs)

    # 4. The concatenated token stream of document_index; sample j = stream[j*T : j*T + T + 1].
    stream = np.concatenate([sequences[seq] for seq in document_index]).astype(np.int64)
    total = (epochs * tpe - 1) // T

    # 5. shuffle_index over 0..total-1 (split the same way as the document index).
    first = sans_final if separate else total
    shuffle_index = np.arange(0, first, dtype=np.int64)
    rs.shuffle(shuffle_index)
    if first != total:
        last = np.arange(first, total, dtype=np.int64)
        rs.shuffle(last)
        shuffle_index = np.concatenate((shuffle_index, last))

    count = num_samples if max_samples is None else max(0, min(max_samples, num_samples))
    samples = []
    for k in range(count):
        j = int(shuffle_index[k])
        samples.append({"k": k, "sample": j, "tokens": stream[j * T : j * T + T + 1].tolist()})
    return {
        "sequence_range": [begin, end],
        "epochs": epochs,
        "separate_final_epoch": separate,
        "total_samples": total,
        "samples": samples,
    }


if __name__ == "__main__":
    if len(sys.argv) not in (7, 8):
        sys.exit("usage: megatron_ref.py PREFIX T N SEED SPLIT SPLIT_NAME [MAX_SAMPLES]")
    p, t, n, s, sp, name = sys.argv[1:7]
    mx = int(sys.argv[7]) if len(sys.argv) == 8 else None
    print(json.dumps(reference(p, int(t), int(n), int(s), sp, name, mx)))
