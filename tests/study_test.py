#!/usr/bin/python3
"""study_test.py — scripts/study.py end to end on a tiny study (seconds).

Two variants (tiny CartesianMoE and SMoE) x 2 seeds x layouts (1 rank; 2 ranks data parallel),
4 steps each, evaluated normally and with --disable-top1. Checks, against the run directories
(metrics.jsonl, eval outputs) read independently here:
  - results.csv holds every step, validation and evaluation record of every run, value for value,
    and one run row with the parameter counts `cmoe params` gives;
  - the PNGs exist, are PNG files, and the numbers each carries (tEXt "cmoe-data") are the runs'
    numbers: mean validation-loss curves, mean and std of final PPL over seeds, disable-top1 PPL,
    tokens/s and efficiency per rank count;
  - report.md shows each variant's mean +- std PPL;
  - every kept checkpoint is evaluated (eval_checkpoints = "all"), and the disable-top1 ratio
    by checkpoint (table and disable_top1_by_step.png) is the runs' own;
  - a second invocation runs nothing and leaves every run untouched; adding an evaluation mode
    (a per-variant `disable_top1:moeA`) runs just those evaluations, no training;
  - a study stopped by SIGTERM mid-training exits 130, and the same command finishes it,
    resuming from the checkpoint with every step recorded once.
Usage: study_test.py --root SRC --cmoe BIN --make-dataset BIN --mpiexec MPIEXEC [--mpi-flag F]...
"""
import argparse
import csv
import json
import os
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import zlib

FAILURES = []


def check(cond, msg):
    if not cond:
        FAILURES.append(msg)
        print("FAIL:", msg)
    return cond


def png_text(path):
    """tEXt chunks of a PNG (and checks the signature and every chunk CRC)."""
    blob = open(path, "rb").read()
    assert blob[:8] == b"\x89PNG\r\n\x1a\n", f"{path}: not a PNG"
    at, text = 8, {}
    while at < len(blob):
        (n,) = struct.unpack_from(">I", blob, at)
        typ, body = blob[at + 4:at + 8], blob[at + 8:at + 8 + n]
        (crc,) = struct.unpack_from(">I", blob, at + 8 + n)
        assert crc == zlib.crc32(typ + body) & 0xFFFFFFFF, f"{path}: chunk {typ} CRC"
        if typ == b"tEXt":
            k, v = body.split(b"\0", 1)
            text[k.decode("latin-1")] = v.decode("latin-1")
        at += 12 + n
    return text


def close(a, b, tol=1e-6):
    return abs(a - b) <= tol * max(1.0, abs(b))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", required=True)
    ap.add_argument("--cmoe", required=True)
    ap.add_argument("--make-dataset", required=True)
    ap.add_argument("--mpiexec", required=True)
    ap.add_argument("--mpi-flag", action="append", default=[])
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="cmoe_study_")
    data = os.path.join(work, "data")
    subprocess.run([a.make_dataset, data, "512", "300", "7"], check=True, stdout=subprocess.DEVNULL)
    study_py = os.path.join(a.root, "scripts", "study.py")
    tiny = os.path.join(a.root, "configs", "tiny.textproto")
    mpirun = json.dumps([a.mpiexec, *a.mpi_flag])
    study = os.path.join(work, "tiny.toml")
    with open(study, "w") as f:
        f.write(f"""title = "tiny study"
description = "Two variants, a few steps."
seeds = [1, 2]
set = ["data.prefix={data}", "train.steps=4", "train.eval_interval=2", "train.log_interval=2",
       "checkpoint.interval=2"]
eval = ["normal", "disable_top1"]
eval_set = ["train.eval_batches=2"]
eval_checkpoints = "all"
mpirun = {mpirun}

[[variant]]
name = "cartesian"
config = "{tiny}"
#EXTRA

[[variant]]
name = "smoe"
config = "{tiny}"
set = ["model.moe.kind=SMOE"]

[[layout]]
np = 1

[[layout]]
np = 2
dp = 2
""")
    out = os.path.join(work, "out")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, study_py, study, "--out", out, "--cmoe", a.cmoe, "--jobs", "2", "--threads", "1"]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    print(p.stdout[-2000:], p.stderr[-2000:])
    if not check(p.returncode == 0, f"study.py exited {p.returncode}"):
        sys.exit(1)

    # --- the runs, read directly ---
    runs = {}
    for v in ("cartesian", "smoe"):
        for seed in (1, 2):
            for lay, np_ in (("np1-pp1-dp1-ep1", 1), ("np2-pp1-dp2-ep1", 2)):
                d = os.path.join(out, "runs", v, f"seed{seed}", lay)
                recs = [json.loads(l) for l in open(os.path.join(d, "metrics.jsonl"))]
                steps = [r for r in recs if "loss" in r]
                vals = [r for r in recs if "val_loss" in r]
                ev = {m: json.load(open(os.path.join(d, f"eval_{m}.json"))) for m in ("normal", "disable_top1")}
                ev2 = {m: json.load(open(os.path.join(d, f"eval_{m}_step2.json"))) for m in ("normal", "disable_top1")}
                check(all(e["step"] == 2 for e in ev2.values()) and all(e["step"] == 4 for e in ev.values()),
                      f"{d}: evaluated checkpoints {[e['step'] for e in ev2.values()]} {[e['step'] for e in ev.values()]}")
                pr = json.loads(subprocess.run([a.cmoe, "params", "--config", os.path.join(d, "config.textproto"),
                                                "--json"], capture_output=True, text=True, check=True).stdout)
                runs[(v, seed, np_)] = {"steps": steps, "vals": vals, "eval": ev, "eval2": ev2, "params": pr, "dir": d}
                check(len(steps) == 4 and [s["step"] for s in steps] == [1, 2, 3, 4], f"{d}: steps {len(steps)}")
                check(ev["disable_top1"]["disable_top1"] is True, f"{d}: eval_disable_top1.json is not disable_top1")

    # --- results.csv ---
    rows = list(csv.DictReader(open(os.path.join(out, "results.csv"))))
    n_cells = 0
    for (v, seed, np_), r in runs.items():
        mine = [x for x in rows if x["variant"] == v and x["seed"] == str(seed) and x["np"] == str(np_)]
        st = [x for x in mine if x["record"] == "step"]
        check(len(st) == len(r["steps"]), f"csv: {v} seed {seed} np {np_}: {len(st)} step rows")
        for row, s in zip(st, r["steps"]):
            for k in ("loss", "lr", "grad_norm", "tokens_per_s", "step_s", "comm_wait_s", "data_wait_s", "compute_s"):
                check(close(float(row[k]), s[k]), f"csv {v}/{seed}/{np_} step {s['step']} {k}: {row[k]} vs {s[k]}")
                n_cells += 1
        va = [x for x in mine if x["record"] == "val"]
        check([(int(x["step"]), float(x["val_loss"])) for x in va] == [(x["step"], x["val_loss"]) for x in r["vals"]],
              f"csv: {v}/{seed}/{np_} validation rows")
        for m in ("normal", "disable_top1"):
            e = [x for x in mine if x["record"] == "eval" and x["eval"] == m]
            if check(len(e) == 2 and [x["step"] for x in e] == ["2", "4"], f"csv: {v}/{seed}/{np_}: eval rows for {m}"):
                check(close(float(e[0]["val_ppl"]), r["eval2"][m]["val_ppl"]), f"csv: {v}/{seed}/{np_} {m} ppl at 2")
                check(close(float(e[1]["val_ppl"]), r["eval"][m]["val_ppl"]), f"csv: {v}/{seed}/{np_} {m} ppl")
                n_cells += 2
        run = [x for x in mine if x["record"] == "run"]
        if check(len(run) == 1, f"csv: {v}/{seed}/{np_}: {len(run)} run rows"):
            check(int(run[0]["params_total"]) == r["params"]["total"] and
                  int(run[0]["params_activated"]) == r["params"]["activated"], f"csv: {v}/{seed}/{np_} params")

    # --- the plots carry the runs' numbers ---
    def mean_over_seeds(v, np_, f):
        return statistics.fmean(f(runs[(v, s, np_)]) for s in (1, 2))

    for png in ("val_loss.png", "final_ppl.png", "disable_top1_ppl.png", "disable_top1_by_step.png", "scaling.png"):
        check(os.path.getsize(os.path.join(out, png)) > 1000, f"{png} missing or empty")
    d = json.loads(png_text(os.path.join(out, "final_ppl.png"))["cmoe-data"])
    for i, v in enumerate(d["variants"]):
        ppls = [runs[(v, s, 1)]["eval"]["normal"]["val_ppl"] for s in (1, 2)]
        check(close(d["mean"][i], statistics.fmean(ppls)), f"final_ppl.png {v} mean {d['mean'][i]} vs {ppls}")
        check(close(d["std"][i], statistics.stdev(ppls)), f"final_ppl.png {v} std")
    check(d["variants"] == ["cartesian", "smoe"], f"final_ppl.png variants {d['variants']}")
    d = json.loads(png_text(os.path.join(out, "disable_top1_ppl.png"))["cmoe-data"])
    for i, v in enumerate(d["variants"]):
        want = mean_over_seeds(v, 1, lambda r: r["eval"]["disable_top1"]["val_ppl"])
        check(close(d["disable_top1_mean"][i], want), f"disable_top1_ppl.png {v}: {d['disable_top1_mean'][i]} vs {want}")
    d = json.loads(png_text(os.path.join(out, "disable_top1_by_step.png"))["cmoe-data"])
    for v in ("cartesian", "smoe"):
        for step, key in ((2, "eval2"), (4, "eval")):
            want = mean_over_seeds(v, 1, lambda r: r[key]["disable_top1"]["val_ppl"] / r[key]["normal"]["val_ppl"])
            got = [p[1] for p in d["ratio"].get(v, []) if p[0] == step]
            check(len(got) == 1 and close(got[0], want), f"disable_top1_by_step.png {v} step {step}: {got} vs {want}")
    d = json.loads(png_text(os.path.join(out, "val_loss.png"))["cmoe-data"])
    for v, curve in d["mean_val_loss"].items():
        want = [[x["step"], statistics.fmean([y["val_loss"] for s in (1, 2) for y in runs[(v, s, 1)]["vals"]
                                               if y["step"] == x["step"]])] for x in runs[(v, 1, 1)]["vals"]]
        check(len(curve) == len(want) == 2 and all(c[0] == w[0] and close(c[1], w[1]) for c, w in zip(curve, want)),
              f"val_loss.png {v}: {curve} vs {want}")
    d = json.loads(png_text(os.path.join(out, "scaling.png"))["cmoe-data"])
    for v in ("cartesian", "smoe"):
        tps = {np_: mean_over_seeds(v, np_, lambda r: statistics.median(s["tokens_per_s"] for s in r["steps"][1:]))
               for np_ in (1, 2)}
        pts = {p["np"]: p for p in d.get(v, [])}
        if check(set(pts) == {1, 2}, f"scaling.png {v}: rank counts {sorted(pts)}"):
            check(close(pts[2]["tokens_per_s"], tps[2]), f"scaling.png {v} tokens/s at 2 ranks")
            check(close(pts[2]["efficiency"], tps[2] / (2 * tps[1])), f"scaling.png {v} efficiency")

    report = open(os.path.join(out, "report.md")).read()
    for v in ("cartesian", "smoe"):
        ppls = [runs[(v, s, 1)]["eval"]["normal"]["val_ppl"] for s in (1, 2)]
        cell = f"{statistics.fmean(ppls):.2f} ± {statistics.stdev(ppls):.2f}"
        check(f"| {v} |" in report and cell in report, f"report.md: no row for {v} with PPL {cell}")

    # --- resumable: nothing to do the second time ---
    mtimes = {k: os.path.getmtime(os.path.join(r["dir"], "metrics.jsonl")) for k, r in runs.items()}
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    check(p.returncode == 0 and "0 to run" in p.stdout, f"second invocation: exit {p.returncode}: {p.stdout[-500:]}")
    check(all(os.path.getmtime(os.path.join(r["dir"], "metrics.jsonl")) == mtimes[k] for k, r in runs.items()),
          "second invocation touched a finished run")
    # A new evaluation mode for one variant: only its evaluations run.
    text = open(study).read().replace("#EXTRA", 'eval = ["disable_top1:moeA"]')
    open(study, "w").write(text)
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    check(p.returncode == 0 and "4 to run" in p.stdout, f"added mode: exit {p.returncode}: {p.stdout[-800:]}")
    check(all(os.path.getmtime(os.path.join(r["dir"], "metrics.jsonl")) == mtimes[k] for k, r in runs.items()),
          "adding an evaluation mode retrained a run")
    for (v, seed, np_), r in runs.items():
        f = os.path.join(r["dir"], "eval_disable_top1-moeA.json")
        check(os.path.exists(f) == (v == "cartesian"), f"{f}: exists {os.path.exists(f)}")
    report = open(os.path.join(out, "report.md")).read()
    ppls = [json.load(open(os.path.join(runs[("cartesian", s, 1)]["dir"], "eval_disable_top1-moeA.json")))["val_ppl"]
            for s in (1, 2)]
    cell = f"| cartesian | `disable_top1:moeA` | {statistics.fmean(ppls):.2f} ± {statistics.stdev(ppls):.2f} |"
    check(cell in report, f"report.md: no row {cell}")

    # --- interrupted and resumed ---
    study2 = os.path.join(work, "long.toml")
    with open(study2, "w") as f:
        f.write(f"""seeds = [3]
set = ["data.prefix={data}", "train.steps=40", "train.eval_interval=20", "checkpoint.interval=4",
       "train.log_interval=1"]
[[variant]]
name = "cartesian"
config = "{tiny}"
""")
    out2 = os.path.join(work, "out2")
    cmd2 = [sys.executable, study_py, study2, "--out", out2, "--cmoe", a.cmoe, "--threads", "1"]
    run2 = os.path.join(out2, "runs", "cartesian", "seed3", "np1-pp1-dp1-ep1")
    proc = subprocess.Popen(cmd2, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if sum(1 for l in open(os.path.join(run2, "metrics.jsonl")) if '"loss"' in l) >= 6:
                break
        except OSError:
            pass
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    text = proc.communicate(timeout=120)[0]
    check(proc.returncode == 130, f"interrupted study exited {proc.returncode}: {text[-800:]}")
    check(not os.path.exists(os.path.join(run2, "study.json")), "interrupted run marked done")
    steps_before = sum(1 for l in open(os.path.join(run2, "metrics.jsonl")) if '"loss"' in l)
    check(steps_before < 40, f"the interrupted run trained all {steps_before} steps; interrupt came too late")
    p = subprocess.run(cmd2, env=env, capture_output=True, text=True)
    check(p.returncode == 0 and "1 to run" in p.stdout, f"resumed study: exit {p.returncode}: {p.stdout[-800:]}")
    log = open(os.path.join(run2, "train.log")).read()
    check("resuming from" in log, "the resumed run did not resume from its checkpoint")
    rows2 = [x for x in csv.DictReader(open(os.path.join(out2, "results.csv"))) if x["record"] == "step"]
    check([int(x["step"]) for x in rows2] == list(range(1, 41)), "resumed run: results.csv steps are not 1..40 once each")

    if FAILURES:
        print(f"{len(FAILURES)} failures (work dir {work})")
        sys.exit(1)
    print(f"ok: study of 8 runs: results.csv matches the runs ({n_cells} values), 5 PNGs carry the runs' numbers, "
          f"report.md has the tables; rerun is a no-op; stopped after {steps_before} of 40 steps and resumed to the end")
    subprocess.run(["rm", "-rf", work])


if __name__ == "__main__":
    main()
