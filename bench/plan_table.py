#!/usr/bin/env python3
"""plan_table.py — the layout-planner table of docs/planner.md: for each config and GPU count,
`cmoe plan --json` at a fixed global batch with micro-batches 1, 2, 4, 8 and ZeRO-1 on and
off, and one markdown row per config and count: the best layout, its memory per GPU, predicted
step time, tokens/s and MFU, where the step's time goes, and the best layout without expert
parallelism for comparison.

usage: bench/plan_table.py [CMOE] [--hardware h100] [--gpus 8,64,512,4096]
Global batch: 1024 sequences of 2048 tokens (2M tokens), or one sequence per GPU when there
are more GPUs than that.
"""
import argparse
import json
import os
import subprocess

repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ap = argparse.ArgumentParser()
ap.add_argument("cmoe", nargs="?", default=os.path.join(repo, "build", "bin", "cmoe"))
ap.add_argument("--hardware", default="h100")
ap.add_argument("--gpus", default="8,64,512,4096")
ap.add_argument("--configs", default="configs/paper/moe-base-cartesian.textproto,configs/paper/moe-large-cartesian.textproto")
args = ap.parse_args()


def plans(config, gpus, batch, extra=()):
    out = subprocess.run([args.cmoe, "plan", "--config", os.path.join(repo, config), "--gpus", str(gpus), "--hardware",
                          args.hardware, "--global-batch", str(batch), "--micro-batch", "1,2,4,8", "--top", "0", "--json",
                          *extra], check=True, capture_output=True, text=True).stdout
    return json.loads(out)["layouts"]


def name(p):
    return f"({p['pp']}, {p['dp']}, {p['ep']}){' Z1' if p['zero1'] else ''} mb {p['micro_batch']} ga {p['grad_accum']}"


print("| model | GPUs | best layout (pp, dp, ep) | GiB/GPU (worst routing) | step s | tokens/s | MFU | "
      "compute / bubble / ep a2a / pp / dp+opt, ms | best with ep = 1 |")
print("|---|---|---|---|---|---|---|---|---|")
for config in args.configs.split(","):
    model = "MoE-Large" if "large" in config else "MoE-Base"
    for g in [int(x) for x in args.gpus.split(",")]:
        batch = max(1024, g)
        ps = plans(config, g, batch)
        fit = [p for p in ps if p["fits"]]
        if not fit:
            print(f"| {model} | {g} | nothing fits | | | | | | |")
            continue
        b = fit[0]
        t = b["time"]
        parts = " / ".join(f"{1e3 * t[k]:.1f}" for k in ("compute", "bubble", "ep_comm", "pp_comm"))
        parts += f" / {1e3 * (t['dp_comm'] + t['optimizer'] + t['other']):.1f}"
        no_ep = [p for p in fit if p["ep"] == 1]
        alt = f"{name(no_ep[0])}: {no_ep[0]['tokens_per_s']:.3g} tok/s" if no_ep else "none fits"
        peak = max(s["memory"]["peak"] for s in b["stages"]) / 2**30
        worst = max(s["memory"]["peak_worst"] for s in b["stages"]) / 2**30
        print(f"| {model} | {g} | {name(b)} | {peak:.1f} ({worst:.1f}) | {b['step_s']:.3f} | {b['tokens_per_s']:.3g} | "
              f"{100 * b['mfu']:.1f}% | {parts} | {alt} |")
