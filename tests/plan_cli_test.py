#!/usr/bin/env python3
"""plan_cli_test.py — `cmoe plan` against `cmoe train` through the binary:
  - for layouts of tiny under mpirun, metrics.jsonl's comm_calls and comm_bytes of every step
    (world rank 0's traffic) equal `cmoe plan --json`'s for stage 0's dp rank 0 exactly, when
    routing leaves no choice (top_k = num_experts); with learned top-2 routing, every kind but
    all_to_all_v exactly and all_to_all_v within the plan's [min, max];
  - one process writes the fields too, all zero;
  - the text output names the layout rule and the best layout; usage errors exit 2, bad input 1.
Usage: plan_cli_test.py CMOE MAKE_DATASET CONFIG MPIEXEC [MPIEXEC_FLAGS...]
"""
import json
import os
import subprocess
import sys
import tempfile

cmoe, make_dataset, config, mpiexec = sys.argv[1:5]
mpi_flags = sys.argv[5:]
KINDS = ["all_reduce", "reduce_scatter", "all_gather", "all_to_all", "all_to_all_v", "broadcast", "send_recv", "barrier"]


def fail(msg):
    print("FAIL:", msg)
    sys.exit(1)


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def steps(run_dir):
    out = []
    for line in open(os.path.join(run_dir, "metrics.jsonl")):
        j = json.loads(line)
        if "loss" in j:
            out.append(j)
    return out


def plan_stage0(sets, np_, layout, zero1):
    r = run([cmoe, "plan", "--config", config, *sets, "--gpus", str(np_), "--layout", layout,
             "--zero1", "on" if zero1 else "off", "--json"])
    if r.returncode != 0:
        fail(f"cmoe plan {layout}: {r.stderr}")
    plans = json.loads(r.stdout)["layouts"]
    if len(plans) != 1:
        fail(f"cmoe plan {layout}: {len(plans)} layouts, want 1")
    return plans[0]["stages"][0]


def main():
    work = tempfile.mkdtemp()
    env = dict(os.environ, OMP_NUM_THREADS="1")
    subprocess.run([make_dataset, os.path.join(work, "data"), "512", "300", "7"], check=True, capture_output=True)
    common = ["--set", f"data.prefix={work}/data", "--set", "train.steps=2", "--set", "train.eval_interval=1000",
              "--set", "checkpoint.interval=0", "--set", "train.micro_batch_size=2"]
    cases = [  # np, (pp, dp, ep), zero1, settings, exact
        (2, (1, 2, 2), True, ["--set", "model.moe.top_k=4", "--set", "train.grad_accum=2"], True),
        (2, (2, 1, 1), False, ["--set", "model.moe.top_k=4", "--set", "train.grad_accum=3"], True),
        (4, (2, 2, 2), False, ["--set", "model.moe.top_k=4", "--set", "train.grad_accum=2"], True),
        (4, (1, 4, 2), False, ["--set", "train.grad_accum=2"], False),
    ]
    for np_, (pp, dp, ep), zero1, sets, exact in cases:
        name = f"({pp},{dp},{ep}){' ZeRO-1' if zero1 else ''} {' '.join(sets[1::2])}"
        run_dir = os.path.join(work, f"run_{pp}{dp}{ep}{int(zero1)}")
        layout_sets = ["--set", f"parallel.pp={pp}", "--set", f"parallel.dp={dp}", "--set", f"parallel.ep={ep}",
                       "--set", f"parallel.distributed_optimizer={'true' if zero1 else 'false'}"]
        r = run([mpiexec, *mpi_flags, "-np", str(np_), cmoe, "train", "--config", config, *common, *sets, *layout_sets,
                 "--run-dir", run_dir], env=env)
        if r.returncode != 0:
            fail(f"{name}: cmoe train failed:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
        stage = plan_stage0(common + sets, np_, f"{pp},{dp},{ep}", zero1)
        records = steps(run_dir)
        if len(records) != 2:
            fail(f"{name}: {len(records)} step records")
        for rec in records:
            for kind in KINDS:
                got_calls, got = rec["comm_calls"][kind], rec["comm_bytes"][kind]
                if got_calls != stage["comm_calls"][kind]:
                    fail(f"{name} step {rec['step']}: {kind} calls {got_calls}, plan {stage['comm_calls'][kind]}")
                lo, hi = stage["comm_bytes_min"][kind], stage["comm_bytes_max"][kind]
                if exact or lo == hi:
                    if got != stage["comm_bytes"][kind]:
                        fail(f"{name} step {rec['step']}: {kind} bytes {got}, plan {stage['comm_bytes'][kind]}")
                elif not lo <= got <= hi:
                    fail(f"{name} step {rec['step']}: {kind} bytes {got} outside the plan's [{lo}, {hi}]")
        print(f"ok: {name}: comm_calls and comm_bytes of both steps match the plan "
              f"({sum(records[0]['comm_bytes'].values())} bytes per step on rank 0)")

    # One process: the fields are there, all zero.
    run_dir = os.path.join(work, "single")
    r = run([cmoe, "train", "--config", config, *common, "--run-dir", run_dir], env=env)
    if r.returncode != 0:
        fail(f"one process: {r.stderr}")
    for rec in steps(run_dir):
        if sorted(rec["comm_bytes"]) != sorted(KINDS) or any(rec["comm_bytes"].values()) or any(rec["comm_calls"].values()):
            fail(f"one process: comm fields {rec['comm_calls']} {rec['comm_bytes']}")
    print("ok: one process reports zero traffic per kind")

    # Text output and errors.
    r = run([cmoe, "plan", "--config", config, "--gpus", "8", "--hardware", "a100"])
    if r.returncode != 0 or "ep divides dp" not in r.stdout or "best layout: pp " not in r.stdout:
        fail(f"text output:\n{r.stdout}\n{r.stderr}")
    for args, code, needle in [
        (["--config", config], 2, "--gpus is required"),
        (["--config", config, "--gpus", "0"], 2, "--gpus 0"),
        (["--config", config, "--gpus", "4", "--zero1", "maybe"], 2, "--zero1 maybe"),
        (["--config", config, "--gpus", "4", "--layout", "1,2"], 2, "--layout 1,2"),
        (["--config", config, "--gpus", "4", "--micro-batch", "2,x"], 2, "--micro-batch 2,x"),
        (["--config", config, "--gpus", "4", "--mfu", "2"], 2, "--mfu 2"),
        (["--config", config, "--gpus", "4", "--hardware", "/no/such.textproto"], 1, "not a built-in name"),
        (["--config", config, "--gpus", "4", "--global-batch", "3"], 1, "no layout of 4 ranks"),
        (["--config", config, "--gpus", "4", "--set", "model.moe.top_k=9"], 1, "top_k"),
    ]:
        r = run([cmoe, "plan", *args])
        if r.returncode != code or needle not in r.stderr:
            fail(f"cmoe plan {' '.join(args)}: exit {r.returncode} (want {code}), stderr {r.stderr!r} lacks {needle!r}")
    bad = os.path.join(work, "bad.textproto")
    open(bad, "w").write('name: "x"\npeak_tflops_bf16: 10\npeak_tflops_f32: 1\nmemory_gib: 8\nmemory_gbs: 0\n'
                         'intra_node_gbs: 1\ninter_node_gbs: 1\n')
    r = run([cmoe, "plan", "--config", config, "--gpus", "2", "--hardware", bad])
    if r.returncode != 1 or f"{bad}: memory_gbs = 0" not in r.stderr:
        fail(f"bad hardware file: exit {r.returncode}, {r.stderr!r}")
    print("ok: text output, usage errors (exit 2) and bad input (exit 1)")
    subprocess.run(["rm", "-rf", work])


main()
