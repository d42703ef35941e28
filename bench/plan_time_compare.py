#!/usr/bin/env python3
"""plan_time_compare.py — the comparisons of bench/plan_time_check.sh.

  plan_time_compare.py METRICS PLAN_JSON NAME RANKS
      one table row: the median step_s of the run's steps after the first two, the plan's
      step_s, their ratio, the steps' spread (median absolute deviation from the median, in %
      of it), and whether world rank 0's comm_calls / comm_bytes of every step
      equal the plan's stage 0 (all_to_all_v: within the plan's range, since routing decides).
  plan_time_compare.py --summary TABLE
      how many layouts are within 25%, the measured and predicted orders, and the pairs the
      two order differently, with how far apart they were measured against their spreads.
"""
import json
import statistics
import sys


def row(metrics, plan_path, name, ranks):
    steps = [json.loads(line) for line in open(metrics) if '"loss"' in line]
    plan = json.load(open(plan_path))["layouts"][0]
    stage = plan["stages"][0]
    bad = []
    for r in steps:
        for kind, got in r["comm_bytes"].items():
            lo, hi, want = stage["comm_bytes_min"][kind], stage["comm_bytes_max"][kind], stage["comm_bytes"][kind]
            calls, want_calls = r["comm_calls"][kind], stage["comm_calls"][kind]
            if calls != want_calls or (lo == hi and got != want) or not lo <= got <= hi:
                bad.append(f"step {r['step']} {kind}: {calls} calls {got} B, plan {want_calls} calls {want} B [{lo}, {hi}]")
    times = [r["step_s"] for r in steps[2:]]
    measured = statistics.median(times)
    spread = 100 * statistics.median(abs(t - measured) for t in times) / measured
    predicted = plan["step_s"]
    note = "calls and bytes exact" if not bad else "DIFFER: " + "; ".join(bad[:3])
    if not bad and stage["comm_bytes_min"]["all_to_all_v"] != stage["comm_bytes_max"]["all_to_all_v"]:
        a2a = statistics.mean(r["comm_bytes"]["all_to_all_v"] for r in steps)
        note = (f"calls exact, bytes exact but all_to_all_v: {a2a / 1e6:.1f} MB measured, "
                f"{stage['comm_bytes']['all_to_all_v'] / 1e6:.1f} MB expected, in range")
    print(f"{name:<14} {int(ranks):5d} {measured:10.3f} {predicted:10.3f} {predicted / measured:8.2f} {spread:7.1f}%  {note}")


def summary(table):
    rows = [line.split() for line in open(table).read().splitlines()[1:]]
    names = [f"({r[0]})" for r in rows]
    meas = [float(r[4]) for r in rows]
    pred = [float(r[5]) for r in rows]
    within = sum(abs(p / m - 1) <= 0.25 for m, p in zip(meas, pred))
    ratios = [p / m for m, p in zip(meas, pred)]
    print(f"within 25%: {within} of {len(rows)} layouts; ratios {min(ratios):.2f} .. {max(ratios):.2f}")
    order = lambda v: sorted(range(len(v)), key=lambda i: v[i])
    print("measured order, fastest first:  " + " ".join(names[i] for i in order(meas)))
    print("predicted order, fastest first: " + " ".join(names[i] for i in order(pred)))
    # Pairs of layouts the two orders put the same way (Kendall's agreement).
    spread = [float(r[7].rstrip("%")) for r in rows]
    pairs = agree = 0
    differ = []
    for i in range(len(rows)):
        for j in range(i + 1, len(rows)):
            pairs += 1
            if (meas[i] < meas[j]) == (pred[i] < pred[j]):
                agree += 1
                continue
            apart = 100 * abs(meas[i] - meas[j]) / min(meas[i], meas[j])
            differ.append(f"{names[i]}-{names[j]} measured {apart:.1f}% apart, steps' spread {spread[i]:.1f}% and "
                          f"{spread[j]:.1f}%{' (within it)' if apart <= spread[i] + spread[j] else ''}")
    print(f"rankings {'agree' if order(meas) == order(pred) else 'differ'}: {agree} of {pairs} pairs ordered alike")
    for d in differ:
        print("  ordered differently: " + d)


if sys.argv[1] == "--summary":
    summary(sys.argv[2])
else:
    row(*sys.argv[1:5])
