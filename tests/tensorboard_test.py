#!/usr/bin/python3
"""tensorboard_test.py — cmoe's TensorBoard event files, read by an independent decoder.

Trains the tiny config for a few steps and reads the run directory's events.out.tfevents.* file
with code that shares nothing with cmoe's writer: TFRecord framing and masked CRC-32C checked
here (a table CRC-32C in Python), Event / Summary messages decoded by Debian's python3-protobuf
from moe/train/tensorboard.proto (compiled by protoc into a scratch directory), the heatmap
PNGs decoded with zlib + struct (chunk CRCs, all five scanline filters). Then every value is
checked against metrics.jsonl:
  - the first event is file_version "brain.Event:2"; every record's two CRCs are right;
  - each step's scalars (train/*, perf/*, time/*, routing/<router>/*) equal the step record;
    val/loss and val/ppl the validation records; time/checkpoint_s the checkpoint records;
  - at each routing record: one histogram per router whose buckets are the per-expert counts,
    and one heatmap per Cartesian layer whose cells' brightness orders as the co-usage counts;
  - the co-usage sums: total = tokens * k_A * k_B over the interval, row sums = A counts * k_B,
    column sums = B counts * k_A;
  - train.tensorboard=false writes no event file;
  - with pipeline stages (pp = 2, 4 layers) world rank 0 reports the routers of both stages,
    with the same counts as one process; with dp = 2 the co-usage is summed over both ranks.
Usage: tensorboard_test.py --cmoe BIN --make-dataset BIN --config tiny.textproto --root SRC
                           --protoc PROTOC --mpiexec MPIEXEC [--mpi-flag F]...
"""
import argparse
import glob
import json
import os
import struct
import subprocess
import sys
import tempfile
import zlib

FAILURES = []


def check(cond, msg):
    if not cond:
        FAILURES.append(msg)
        print("FAIL:", msg)
    return cond


# --- CRC-32C (Castagnoli, reflected 0x82F63B78), table driven ---
_TABLE = []
for _i in range(256):
    _c = _i
    for _ in range(8):
        _c = (_c >> 1) ^ 0x82F63B78 if _c & 1 else _c >> 1
    _TABLE.append(_c)


def crc32c(data):
    c = 0xFFFFFFFF
    for b in data:
        c = _TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def masked(data):
    c = crc32c(data)
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def read_records(path):
    data = open(path, "rb").read()
    out, at = [], 0
    while at < len(data):
        if not check(at + 12 <= len(data), f"{path}: truncated record header at byte {at}"):
            break
        (n,) = struct.unpack_from("<Q", data, at)
        (hcrc,) = struct.unpack_from("<I", data, at + 8)
        check(hcrc == masked(data[at:at + 8]), f"{path}: length CRC wrong at byte {at}")
        body = data[at + 12:at + 12 + n]
        if not check(len(body) == n and at + 16 + n <= len(data), f"{path}: truncated record at byte {at}"):
            break
        (dcrc,) = struct.unpack_from("<I", data, at + 12 + n)
        check(dcrc == masked(body), f"{path}: data CRC wrong at byte {at}")
        out.append(body)
        at += 16 + n
    return out


# --- PNG decoding (independent of cmoe's encoder) ---
def png_decode(blob):
    """Returns (width, height, rows of (r, g, b) tuples)."""
    assert blob[:8] == b"\x89PNG\r\n\x1a\n", "PNG signature"
    at, idat, ihdr = 8, b"", None
    while at < len(blob):
        (n,) = struct.unpack_from(">I", blob, at)
        typ = blob[at + 4:at + 8]
        body = blob[at + 8:at + 8 + n]
        (crc,) = struct.unpack_from(">I", blob, at + 8 + n)
        assert crc == zlib.crc32(typ + body) & 0xFFFFFFFF, f"PNG chunk {typ} CRC"
        if typ == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        elif typ == b"IDAT":
            idat += body
        elif typ == b"IEND":
            break
        at += 12 + n
    w, h, depth, ctype, _, _, interlace = ihdr
    assert depth == 8 and ctype == 2 and interlace == 0, f"IHDR {ihdr}"
    raw = zlib.decompress(idat)
    stride, bpp = w * 3, 3
    assert len(raw) == h * (stride + 1), "IDAT size"
    prev = bytearray(stride)
    rows = []
    for y in range(h):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for x in range(stride):
            a = line[x - bpp] if x >= bpp else 0
            b = prev[x]
            c = prev[x - bpp] if x >= bpp else 0
            if f == 1:
                line[x] = (line[x] + a) & 255
            elif f == 2:
                line[x] = (line[x] + b) & 255
            elif f == 3:
                line[x] = (line[x] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[x] = (line[x] + pred) & 255
            else:
                assert f == 0, f"filter {f}"
        rows.append([tuple(line[i:i + 3]) for i in range(0, stride, 3)])
        prev = line
    return w, h, rows


def luminance(rgb):
    return 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]


def close(a, b, rel=1e-5, abs_=1e-4):
    return abs(a - b) <= abs_ + rel * abs(b)


def load_metrics(run):
    recs = [json.loads(l) for l in open(os.path.join(run, "metrics.jsonl"))]
    steps = [r for r in recs if "loss" in r]
    vals = [r for r in recs if "val_loss" in r]
    ckpts = [r for r in recs if "ckpt_s" in r]
    routing = [r for r in recs if "routing" in r]
    return steps, vals, ckpts, routing


def load_events(run, pb):
    files = sorted(glob.glob(os.path.join(run, "events.out.tfevents.*")))
    if not check(len(files) == 1, f"{run}: {len(files)} event files, want 1"):
        return {}, {}, {}
    recs = read_records(files[0])
    events = []
    for r in recs:
        e = pb.Event()
        e.ParseFromString(r)
        events.append(e)
    check(events and events[0].WhichOneof("what") == "file_version" and events[0].file_version == "brain.Event:2",
          f"{files[0]}: first event is not file_version brain.Event:2")
    scalars, histos, images = {}, {}, {}
    for e in events[1:]:
        check(e.wall_time > 1e9, f"wall_time {e.wall_time}")
        for v in e.summary.value:
            kind = v.WhichOneof("value")
            key = (v.tag, e.step)
            if kind == "simple_value":
                scalars[key] = v.simple_value
            elif kind == "histo":
                histos[key] = v.histo
            elif kind == "image":
                images[key] = v.image
    return scalars, histos, images


def check_run(run, pb, k_a=2, k_b=2, cartesian_layers=None):
    steps, vals, ckpts, routing = load_metrics(run)
    scalars, histos, images = load_events(run, pb)
    check(len(steps) > 0 and len(routing) > 0, f"{run}: no step or routing records")
    n_checked = 0
    for r in steps:
        s = r["step"]
        compute = r["compute_s"]
        expect = {"train/loss": r["loss"], "train/aux_loss": r["aux_loss"], "train/lr": r["lr"],
                  "train/grad_norm": r["grad_norm"], "perf/tokens_per_s": r["tokens_per_s"], "perf/mfu": r["mfu"],
                  "time/step_s": r["step_s"], "time/compute_s": compute, "time/comm_wait_s": r["comm_wait_s"],
                  "time/data_wait_s": r["data_wait_s"]}
        for name, load in r["expert_load"].items():
            for f in ("max_over_mean", "cv", "dropped_frac"):
                expect[f"routing/{name}/{f}"] = load[f]
        for tag, want in expect.items():
            got = scalars.get((tag, s))
            # metrics.jsonl rounds to 4-6 decimals; TensorBoard holds the f32 of the full value.
            if check(got is not None, f"{run}: no scalar {tag} at step {s}"):
                tol = 6e-3 if tag == "perf/tokens_per_s" else 1e-4 if tag.startswith(("time/", "routing/")) else 2e-6
                check(close(got, want, 1e-5, tol),
                      f"{run}: {tag} at step {s}: event {got} vs metrics.jsonl {want}")
                n_checked += 1
        check(close(r["step_s"], compute + r["comm_wait_s"] + r["data_wait_s"], 0, 3e-4),
              f"{run}: step {s}: step_s {r['step_s']} != compute + comm + data")
    for v in vals:
        for tag, key in (("val/loss", "val_loss"), ("val/ppl", "val_ppl")):
            got = scalars.get((tag, v["step"]))
            if check(got is not None, f"{run}: no {tag} at step {v['step']}"):
                check(close(got, v[key], 1e-5, 1e-4), f"{run}: {tag} {got} vs {v[key]}")
                n_checked += 1
    for c in ckpts:
        got = scalars.get(("time/checkpoint_s", c["step"]))
        if check(got is not None, f"{run}: no time/checkpoint_s at step {c['step']}"):
            check(close(got, c["ckpt_s"], 0, 1e-4), f"{run}: checkpoint_s {got} vs {c['ckpt_s']}")
            n_checked += 1
    tokens = {r["step"]: r["tokens"] for r in steps}
    step_tags = {t for (t, s) in scalars}
    all_routers = set()
    for rec in routing:
        s, ro = rec["step"], rec["routing"]
        check(ro["last_step"] == s and ro["first_step"] < s, f"{run}: routing record steps {ro['first_step']}..{s}")
        for name, rr in ro["routers"].items():
            all_routers.add(name)
            h = histos.get((f"routing/{name}/load", s))
            if check(h is not None, f"{run}: no histogram routing/{name}/load at step {s}"):
                check([int(b) for b in h.bucket] == rr["counts"], f"{run}: histogram {name} {list(h.bucket)} vs {rr['counts']}")
                check(list(h.bucket_limit) == [i + 0.5 for i in range(len(rr["counts"]))], f"{run}: bucket limits")
                check(int(h.num) == rr["pairs"] == sum(rr["counts"]), f"{run}: histogram num {h.num} vs {rr['pairs']}")
                check(h.sum == sum(i * c for i, c in enumerate(rr["counts"])), f"{run}: histogram sum")
                n_checked += 1
        interval_tokens = sum(tokens[t] for t in range(ro["first_step"] + 1, s + 1))
        if cartesian_layers is not None:
            check(sorted(ro["co_usage"]) == sorted(cartesian_layers),
                  f"{run}: co-usage layers {sorted(ro['co_usage'])}, want {sorted(cartesian_layers)}")
        for layer, cu in ro["co_usage"].items():
            m = cu["counts"]
            ca, cb = ro["routers"][cu["a"]]["counts"], ro["routers"][cu["b"]]["counts"]
            check(sum(map(sum, m)) == interval_tokens * k_a * k_b,
                  f"{run}: co-usage {layer} total {sum(map(sum, m))} != {interval_tokens} tokens * {k_a} * {k_b}")
            check([sum(row) for row in m] == [c * k_b for c in ca], f"{run}: co-usage {layer} row sums vs A counts")
            check([sum(col) for col in zip(*m)] == [c * k_a for c in cb], f"{run}: co-usage {layer} column sums vs B counts")
            im = images.get((f"co_usage/{layer}", s))
            if not check(im is not None, f"{run}: no image co_usage/{layer} at step {s}"):
                continue
            w, h, px = png_decode(im.encoded_image_string)
            n = len(m)
            check(im.width == w and im.height == h and im.colorspace == 3, f"{run}: image header {im.width}x{im.height}")
            check(w % n == 0 and h % n == 0 and w // n == h // n, f"{run}: {w}x{h} image for {n}x{n} cells")
            cell = w // n
            lum = {}
            for a in range(n):
                for b in range(n):
                    block = {px[y][x] for y in range(a * cell, (a + 1) * cell) for x in range(b * cell, (b + 1) * cell)}
                    check(len(block) == 1, f"{run}: cell ({a}, {b}) of {layer} is not one colour")
                    lum[(a, b)] = luminance(next(iter(block)))
            cells = sorted(lum, key=lambda ab: m[ab[0]][ab[1]])
            for x, y in zip(cells, cells[1:]):
                if m[x[0]][x[1]] < m[y[0]][y[1]]:
                    check(lum[x] <= lum[y] + 1e-9, f"{run}: {layer} cell {x} ({m[x[0]][x[1]]}) brighter than {y}")
            top = max(lum, key=lambda ab: m[ab[0]][ab[1]])
            check(abs(lum[top] - max(lum.values())) < 1e-9, f"{run}: the largest count is not the brightest cell")
            n_checked += 1
    for name in all_routers:
        check(f"routing/{name}/max_over_mean" in step_tags, f"{run}: router {name} has no per-step scalars")
    return n_checked, routing, steps


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cmoe", required=True)
    ap.add_argument("--make-dataset", required=True)
    ap.add_argument("--config", required=True)
    ap.add_argument("--root", required=True)
    ap.add_argument("--protoc", required=True)
    ap.add_argument("--mpiexec", required=True)
    ap.add_argument("--mpi-flag", action="append", default=[])
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="cmoe_tb_")
    env = dict(os.environ, OMP_NUM_THREADS="1")

    subprocess.run([a.protoc, f"--python_out={work}", "-I", a.root, os.path.join(a.root, "moe/train/tensorboard.proto")],
                   check=True)
    sys.path.insert(0, work)
    from moe.train import tensorboard_pb2 as pb  # noqa: E402  (generated just above)

    data = os.path.join(work, "data")
    subprocess.run([a.make_dataset, data, "512", "300", "7"], check=True, stdout=subprocess.DEVNULL)
    common = ["--config", a.config, "--set", f"data.prefix={data}", "--set", "train.steps=6", "--set",
              "train.eval_interval=3", "--set", "train.routing_stats_interval=4", "--set", "checkpoint.interval=3"]

    def train(run, extra, np_=1):
        cmd = [a.cmoe, "train", *common, *extra, "--run-dir", os.path.join(work, run)]
        if np_ > 1:
            cmd = [a.mpiexec, *a.mpi_flag, "-np", str(np_), *cmd]
        p = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if not check(p.returncode == 0, f"{run}: cmoe train exited {p.returncode}"):
            print(p.stdout[-3000:], p.stderr[-3000:])
            return None
        return os.path.join(work, run)

    total = 0
    # One process: every value against metrics.jsonl (routing records at steps 4 and 6, the last).
    run = train("single", [])
    if run:
        n, routing, _ = check_run(run, pb, cartesian_layers=["layers.0"])
        check([r["step"] for r in routing] == [4, 6], f"routing records at {[r['step'] for r in routing]}, want [4, 6]")
        total += n
    # Off switch.
    run = train("off", ["--set", "train.tensorboard=false"])
    if run:
        check(not glob.glob(os.path.join(run, "events.out.tfevents.*")), "train.tensorboard=false wrote an event file")
        check(os.path.getsize(os.path.join(run, "metrics.jsonl")) > 0, "train.tensorboard=false: no metrics.jsonl")
    # Pipeline stages: 4 layers (MoE layers 0 and 2, one per stage); rank 0 reports both, and the
    # counts equal one process's.
    four = ["--set", "model.n_layers=4"]
    ref = train("ref4", four)
    pp = train("pp2", four + ["--set", "parallel.pp=2"], np_=2)
    if ref and pp:
        n, routing_pp, steps_pp = check_run(pp, pb, cartesian_layers=["layers.0", "layers.2"])
        total += n
        _, routing_ref, steps_ref = check_run(ref, pb, cartesian_layers=["layers.0", "layers.2"])
        want = {"layers.0.moeA", "layers.0.moeB", "layers.2.moeA", "layers.2.moeB"}
        check(all(set(r["expert_load"]) == want for r in steps_pp),
              f"pp=2: step records report routers {sorted(steps_pp[0]['expert_load'])}, want {sorted(want)}")
        check([r["routing"] for r in routing_pp] == [r["routing"] for r in routing_ref],
              "pp=2: routing records differ from one process's")
    # Data parallel: co-usage summed over both ranks (the totals check in check_run uses the
    # step's tokens over all ranks).
    dp = train("dp2", ["--set", "parallel.dp=2", "--set", "train.micro_batch_size=2"], np_=2)
    if dp:
        n, _, steps_dp = check_run(dp, pb, cartesian_layers=["layers.0"])
        total += n
        check(all(r["comm_wait_s"] > 0 for r in steps_dp), "dp=2: a step without communication wait")

    if FAILURES:
        print(f"{len(FAILURES)} failures (work dir {work})")
        sys.exit(1)
    print(f"ok: {total} event-file values equal metrics.jsonl (single process, pp=2, dp=2); "
          "CRCs, histograms and heatmaps checked")
    subprocess.run(["rm", "-rf", work])


if __name__ == "__main__":
    main()
