#!/usr/bin/env python3
"""profile_test.py — `--set train.profile_steps=A:B` end to end: trains the tiny config on one
rank and on two (dp 2), then checks each rank's Chrome trace and summary:
  - the trace is valid JSON with complete ("X") events, one "step" span per profiled step;
  - every op kind of a step appears, forward and backward (the model's ops, for CartesianMoE);
  - spans on a thread nest properly (no partial overlap);
  - the spans directly inside each step cover its duration within 5%;
  - two ranks: collectives appear with their bytes, and every rank writes its own files;
  - the summary's rows add up: self times do not exceed the steps' time, and the table is
    printed by rank 0;
  - an invalid window is refused naming the field.
Usage: profile_test.py CMOE MAKE_DATASET CONFIG MPIEXEC [MPIEXEC_FLAGS...]
"""
import json
import os
import subprocess
import sys
import tempfile

cmoe, make_dataset, config, mpiexec = sys.argv[1:5]
mpi_flags = sys.argv[5:]
EXPECTED_OPS = ["embedding", "rmsnorm", "linear", "rope", "attention", "swiglu", "softmax", "gather_rows",
                "grouped_linear", "scatter_add_rows", "cross_entropy", "add", "scale_rows", "add_bias", "mul"]


def fail(msg):
    print("FAIL:", msg)
    sys.exit(1)


def check_rank(run, rank, steps, want_comm):
    path = os.path.join(run, "profile", f"trace_rank{rank}.json")
    doc = json.load(open(path))
    ev = doc["traceEvents"]
    if not ev or any(e["ph"] != "X" or e["dur"] < 0 for e in ev):
        fail(f"{path}: empty or not complete events")
    step_spans = [e for e in ev if e["cat"] == "step"]
    if sorted(e["args"]["step"] for e in step_spans) != steps:
        fail(f"{path}: step spans {[e['args'] for e in step_spans]}, want steps {steps}")
    names = {e["name"] for e in ev}
    for n in ("router", "dispatch_plan", "data wait", "adamw", "grad_norm"):
        if n not in names:
            fail(f"{path}: no span '{n}'")
    for op in EXPECTED_OPS:
        for n in (op, op + " backward"):
            if n not in names:
                fail(f"{path}: no span '{n}' (have {sorted(names)})")
    # Nesting: on each thread, sorted by begin (outer first), a span starting inside another
    # must end inside it. Timestamps are rounded to 1 ns (3 decimals of us): allow that.
    eps = 0.002
    by_tid = {}
    for e in ev:
        by_tid.setdefault(e["tid"], []).append(e)
    for tid, es in by_tid.items():
        es.sort(key=lambda e: (e["ts"], -e["dur"]))
        stack = []
        for e in es:
            while stack and stack[-1]["ts"] + stack[-1]["dur"] <= e["ts"] + eps:
                stack.pop()
            if stack and e["ts"] + e["dur"] > stack[-1]["ts"] + stack[-1]["dur"] + eps:
                fail(f"{path}: '{e['name']}' at {e['ts']} overlaps '{stack[-1]['name']}' partially (tid {tid})")
            stack.append(e)
    # Coverage: direct children of each step span account for its duration within 5%.
    main = [e for e in by_tid[step_spans[0]["tid"]]]
    for s in step_spans:
        end = s["ts"] + s["dur"]
        inside = sorted((e for e in main if e is not s and e["ts"] >= s["ts"] - eps and e["ts"] + e["dur"] <= end + eps),
                        key=lambda e: (e["ts"], -e["dur"]))
        covered, reach = 0.0, -1.0
        for e in inside:
            if e["ts"] >= reach - eps:  # a direct child (not nested in the previous one)
                covered += e["dur"]
                reach = e["ts"] + e["dur"]
        if covered < 0.95 * s["dur"]:
            fail(f"{path}: step {s['args']['step']}: spans inside cover {covered:.0f} of {s['dur']:.0f} us (< 95%)")
    comm = [e for e in ev if e["cat"] == "comm"]
    if want_comm:
        if not any(e["args"].get("bytes", 0) > 0 for e in comm):
            fail(f"{path}: no collective with bytes")
    summary = json.load(open(os.path.join(run, "profile", f"summary_rank{rank}.json")))
    if summary["steps"] != len(steps) or summary["step_s"] <= 0:
        fail(f"summary_rank{rank}.json: {summary['steps']} steps")
    total_self = sum(r["self_s"] for r in summary["rows"])
    if total_self > summary["step_s"] * 1.05 + 0.01:  # + checkpoint/eval work outside steps
        fail(f"summary: self times sum to {total_self} s > the steps' {summary['step_s']} s")
    if not any(r["kind"] == "linear" and r["flops"] > 0 for r in summary["rows"]):
        fail("summary: linear has no FLOPs")


with tempfile.TemporaryDirectory() as work:
    subprocess.run([make_dataset, f"{work}/data", "512", "200", "3"], check=True, stdout=subprocess.DEVNULL)
    common = ["--config", config, "--set", f"data.prefix={work}/data", "--set", "train.steps=4",
              "--set", "train.eval_interval=100", "--set", "train.profile_steps=2:3"]
    out = subprocess.run([cmoe, "train", *common, "--run-dir", f"{work}/one"], capture_output=True, text=True)
    if out.returncode != 0:
        fail(f"train: {out.stderr}")
    if "profile: 2 steps" not in out.stdout or "grouped_linear backward" not in out.stdout:
        fail(f"the summary table is not printed:\n{out.stdout}")
    check_rank(f"{work}/one", 0, [2, 3], want_comm=False)

    out = subprocess.run([mpiexec, *mpi_flags, "-np", "2", cmoe, "train", *common, "--set", "parallel.dp=2",
                          "--set", "parallel.ep=2", "--set", "train.micro_batch_size=2", "--run-dir", f"{work}/two"],
                         capture_output=True, text=True)
    if out.returncode != 0:
        fail(f"mpirun train: {out.stdout}\n{out.stderr}")
    for r in (0, 1):
        check_rank(f"{work}/two", r, [2, 3], want_comm=True)

    bad = subprocess.run([cmoe, "train", *common, "--set", "train.profile_steps=3:2", "--run-dir", f"{work}/bad"],
                         capture_output=True, text=True)
    if bad.returncode != 1 or "train.profile_steps" not in bad.stderr or os.path.exists(f"{work}/bad"):
        fail(f"an invalid window: exit {bad.returncode}, {bad.stderr}")
print("PASS: traces valid, every op present forward and backward, spans nested, steps covered, collectives with bytes")
