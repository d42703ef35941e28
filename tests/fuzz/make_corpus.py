#!/usr/bin/env python3
"""make_corpus.py — writes the hand-built seed inputs of the idx and manifest fuzz targets.

Run from the repository root: python3 tests/fuzz/make_corpus.py. The outputs are committed
(tests/fuzz/corpus/idx/*.fuzz, tests/fuzz/corpus/manifest/small_*.pb); this script says how they
were made and remakes them byte for byte. Seeds from real runs (manifest/tiny_*.pb, copied from
`cmoe train` and `cmoe checkpoint reshard` outputs) and found crashers (*/regressions/) are not
written here.
"""
import os
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def idx_input(dtype, itemsize, lengths, docs):
    """An idx_fuzz input: u64 .bin size, then the .idx Megatron's builder writes."""
    b = b"MMIDIDX\x00\x00" + struct.pack("<QBQQ", 1, dtype, len(lengths), len(docs))
    b += b"".join(struct.pack("<i", n) for n in lengths)
    ptr = 0
    for n in lengths:
        b += struct.pack("<q", ptr)
        ptr += n * itemsize
    b += b"".join(struct.pack("<q", d) for d in docs)
    return struct.pack("<Q", ptr) + b


# CRC-32C (Castagnoli), reflected polynomial 0x82F63B78.
_TABLE = []
for i in range(256):
    c = i
    for _ in range(8):
        c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
    _TABLE.append(c)


def crc32c(data):
    c = 0xFFFFFFFF
    for x in data:
        c = _TABLE[(c ^ x) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def varint(v):
    v &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)


def field(num, value):
    """proto2 field: int -> varint, bytes/str -> length-delimited."""
    if isinstance(value, int):
        return varint(num << 3) + varint(value)
    if isinstance(value, str):
        value = value.encode()
    return varint(num << 3 | 2) + varint(len(value)) + value


def entry(name, dtype, shape, rows, file, offset, nbytes, crc):
    b = field(1, name) + field(2, dtype) + b"".join(field(3, d) for d in shape)
    if rows is not None:
        b += field(4, rows[0]) + field(5, rows[1])
    return b + field(6, file) + field(7, offset) + field(8, nbytes) + field(9, crc)


def manifest(version, sealed):
    """Two writers: w (6, 3, 2) f32 rows [0, 2) in a.bin and [2, 6) in b.bin, b (5) in b.bin."""
    b = field(1, version) + field(2, "model { vocab_size: 512 d_model: 64 }\n") + field(3, 5) + field(4, 160)
    b += field(5, 1234)
    b += field(6, field(1, "data.consumed_samples") + field(2, 40))
    b += field(6, field(1, "optimizer.steps") + field(2, 10))
    b += field(7, entry("w", "f32", [6, 3, 2], (0, 2), "a.bin", 0, 48, 0x1234))
    b += field(7, entry("w", "f32", [6, 3, 2], (2, 6), "b.bin", 0, 96, 0x5678))
    b += field(7, entry("b", "f32", [5], (0, 5), "b.bin", 128, 20, 0x9ABC))
    if version >= 2:
        b += field(8, field(1, 1) + field(2, 2) + field(3, 2))
    if sealed:
        b += b"\x7d" + struct.pack("<I", crc32c(b))
    return b


def write(path, data):
    with open(os.path.join(ROOT, path), "wb") as f:
        f.write(data)


write("idx/golden_uint16.fuzz", idx_input(8, 2, [3, 0, 1, 2], [0, 1, 1, 3, 4]))
write("idx/int32.fuzz", idx_input(4, 4, [10, 20, 5], [0, 3]))
write("idx/empty_uint8.fuzz", idx_input(1, 1, [], [0]))
write("idx/int64_empty_docs.fuzz", idx_input(5, 8, [100, 0, 400], [0, 1, 1, 2, 3]))
write("idx/int16_one.fuzz", idx_input(3, 2, [7], [0, 1]))
write("manifest/small_v3.pb", manifest(3, True))
write("manifest/small_v2.pb", manifest(2, False))
write("manifest/small_v1.pb", manifest(1, False))
