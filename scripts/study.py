#!/usr/bin/python3
"""study.py — run a study (a set of cmoe training runs), resumably, and summarise it.

    scripts/study.py STUDY_FILE --out DIR [--report-dir DIR] [--cmoe BIN] [--jobs N] [--threads N]
                     [--report-only] [--list]

A study file (TOML) lists variants (a config plus `--set` overrides), seeds and (np, pp, dp, ep)
layouts; the runs are their product. Each run trains in its own directory
DIR/runs/<variant>/seed<S>/<layout>/ (cmoe's run directory: config, metrics.jsonl, TensorBoard
events, checkpoints, train.log), then its final checkpoint is evaluated in each of the study's
evaluation modes (normal; --disable-top1; --disable-top1-set SET), and with
eval_checkpoints = "all" every checkpoint the run kept too; study.json there gathers the
results. What is done is skipped (a finished training is marked by trained.json, each
evaluation by its eval_<mode>[_step<N>].json), so adding evaluation modes to a finished study
runs just those; a training that was interrupted resumes from its latest checkpoint (cmoe train
does that), so the whole study can be stopped (Ctrl-C or SIGTERM: running trainings stop at
their next step boundary with a checkpoint) and started again with the same command.

Then, from every finished run, it writes into the report directory (default DIR):
  results.csv   one row per training step, validation, final evaluation and run (docs/cli.md)
  report.md     per-variant tables, mean +- sample std over seeds: parameters, final validation
                loss and PPL, PPL with top-1 disabled, tokens/s; scaling efficiency across rank
                counts when the study has several layouts
  *.png         validation-loss curves, final PPL with seed error bars, disable-top1 PPL,
                tokens/s and scaling efficiency against rank count. Each PNG carries the numbers
                it plots as JSON in a tEXt chunk named "cmoe-data".
Python and matplotlib from Debian (scripts/install-deps.sh); no other dependency.
"""
import argparse
import concurrent.futures
import csv
import json
import math
import os
import shlex
import signal
import statistics
import subprocess
import sys
import threading
import time
import tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEP_FIELDS = ["loss", "aux_loss", "lr", "grad_norm", "tokens_per_s", "mfu", "tokens", "step_s", "compute_s",
               "comm_wait_s", "data_wait_s"]
CSV_FIELDS = ["record", "variant", "seed", "np", "pp", "dp", "ep", "step", *STEP_FIELDS, "val_loss", "val_ppl",
              "eval", "val_tokens", "params_total", "params_activated", "median_tokens_per_s", "train_wall_s", "run_dir"]
IDENTITY = ["variant", "seed", "np", "pp", "dp", "ep", "config", "sets"]  # what makes a run the same run


def eval_flags(mode):
    """cmoe eval flags of an evaluation mode: normal, disable_top1, disable_top1:SET."""
    if mode == "normal":
        return []
    if mode == "disable_top1":
        return ["--disable-top1"]
    if mode.startswith("disable_top1:") and len(mode) > len("disable_top1:"):
        return ["--disable-top1-set", mode.split(":", 1)[1]]
    return None


class StudyError(Exception):
    pass


# ---------------------------------------------------------------- the study file

def load_study(path):
    try:
        with open(path, "rb") as f:
            s = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise StudyError(f"{path}: {e}") from None
    known = {"title", "description", "cmoe", "seeds", "set", "eval", "eval_set", "eval_checkpoints", "mpirun",
             "variant", "configs", "override", "layout"}
    for k in s:
        if k not in known:
            raise StudyError(f"{path}: unknown key '{k}' (known: {', '.join(sorted(known))})")
    base = os.path.dirname(os.path.abspath(path))

    def resolve(p):  # config paths: relative to the repository root, else to the study file
        for cand in (os.path.join(ROOT, p), os.path.join(base, p)):
            if os.path.exists(cand):
                return os.path.relpath(cand, ROOT) if cand.startswith(ROOT + os.sep) else cand
        raise StudyError(f"{path}: config {p} not found (relative to {ROOT} or {base})")

    def str_list(v, what):
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            raise StudyError(f"{path}: {what} must be a list of strings")
        return v

    def modes(v, what):
        for e in str_list(v, what):
            if eval_flags(e) is None:
                raise StudyError(f"{path}: {what}: mode '{e}' unknown (normal, disable_top1, disable_top1:SET)")
        return v

    evals = modes(s.get("eval", ["normal"]), "eval")
    variants = []
    for i, v in enumerate(s.get("variant", [])):
        if "name" not in v or "config" not in v:
            raise StudyError(f"{path}: variant #{i + 1} needs 'name' and 'config'")
        extra = [e for e in modes(v.get("eval", []), f"variant {v['name']} eval") if e not in evals]
        variants.append({"name": v["name"], "config": resolve(v["config"]), "set": str_list(v.get("set", []), "set"),
                         "eval": evals + extra})
    overrides = s.get("override", [{"name": "", "set": []}])
    for c in str_list(s.get("configs", []), "configs"):
        stem = os.path.splitext(os.path.basename(c))[0].replace(".textproto", "")
        for o in overrides:
            name = stem if not o.get("name") else f"{stem}+{o['name']}"
            variants.append({"name": name, "config": resolve(c), "set": str_list(o.get("set", []), "override set"),
                             "eval": evals})
    if not variants:
        raise StudyError(f"{path}: no runs: give [[variant]] tables or a 'configs' list")
    names = [v["name"] for v in variants]
    if len(set(names)) != len(names):
        raise StudyError(f"{path}: variant names repeat: {names}")
    for n in names:
        if not n or "/" in n or n.startswith("."):
            raise StudyError(f"{path}: variant name '{n}' must be non-empty without '/'")
    seeds = s.get("seeds", [1234])
    if not isinstance(seeds, list) or not seeds or not all(isinstance(x, int) and x >= 0 for x in seeds):
        raise StudyError(f"{path}: seeds must be a non-empty list of integers >= 0")
    layouts = []
    for i, l in enumerate(s.get("layout", [{"np": 1}])):
        pp, dp, ep = int(l.get("pp", 1)), int(l.get("dp", 0)), int(l.get("ep", 1))
        np_ = int(l.get("np", pp * max(dp, 1)))
        dp = dp or np_ // pp
        if min(pp, dp, ep, np_) < 1 or np_ != pp * dp or dp % ep:
            raise StudyError(f"{path}: layout #{i + 1} {l}: need np = pp * dp and ep dividing dp")
        layouts.append({"np": np_, "pp": pp, "dp": dp, "ep": ep})
    eval_checkpoints = s.get("eval_checkpoints", "final")
    if eval_checkpoints not in ("final", "all"):
        raise StudyError(f"{path}: eval_checkpoints must be \"final\" or \"all\"")
    return {"eval_checkpoints": eval_checkpoints, "title": s.get("title", os.path.basename(path)), "description": s.get("description", ""),
            "cmoe": s.get("cmoe", "build/bin/cmoe"), "seeds": seeds, "set": str_list(s.get("set", []), "set"),
            "eval": evals, "eval_set": str_list(s.get("eval_set", []), "eval_set"),
            "mpirun": str_list(s.get("mpirun", ["mpirun", "--oversubscribe", "--bind-to", "none"]), "mpirun"),
            "variants": variants, "layouts": layouts, "path": path}


def layout_name(l):
    return f"np{l['np']}-pp{l['pp']}-dp{l['dp']}-ep{l['ep']}"


def plan_runs(study, out):
    """Seed-major order, so a study stopped early has every variant of its first seeds."""
    runs = []
    for seed in study["seeds"]:
        for l in study["layouts"]:
            for v in study["variants"]:
                d = os.path.join(out, "runs", v["name"], f"seed{seed}", layout_name(l))
                sets = [*v["set"], *study["set"], f"train.seed={seed}", f"parallel.pp={l['pp']}",
                        f"parallel.dp={l['dp']}", f"parallel.ep={l['ep']}"]
                runs.append({"variant": v["name"], "seed": seed, **l, "dir": d, "config": v["config"], "sets": sets,
                             "eval": v["eval"]})
    return runs


# ---------------------------------------------------------------- running

class Runner:
    def __init__(self, study, cmoe, threads):
        self.study, self.cmoe, self.threads = study, cmoe, threads
        self.stopping = threading.Event()
        self.children = set()
        self.lock = threading.Lock()

    def _run(self, cmd, log, env):
        if self.stopping.is_set():
            raise KeyboardInterrupt
        with open(log, "a") as f:
            f.write(f"$ {shlex.join(cmd)}\n")
            f.flush()
            p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=ROOT, start_new_session=True)
            with self.lock:
                self.children.add(p)
            try:
                rc = p.wait()
            finally:
                with self.lock:
                    self.children.discard(p)
        return rc

    def stop(self):
        """Ask every running child to stop at its next step boundary (cmoe saves a checkpoint)."""
        self.stopping.set()
        with self.lock:
            for p in self.children:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass

    def run_one(self, r):
        d = r["dir"]
        os.makedirs(d, exist_ok=True)
        spec = {k: r[k] for k in IDENTITY}
        spec_path = os.path.join(d, "study-run.json")
        if os.path.exists(spec_path):
            old = json.load(open(spec_path))
            if {k: old.get(k) for k in IDENTITY} != spec:
                raise StudyError(f"{d} holds a different run ({spec_path}); remove it or use another --out")
        else:
            json.dump(spec, open(spec_path, "w"), indent=1)
        env = dict(os.environ, OMP_NUM_THREADS=str(self.threads))
        cmoe = os.path.join(ROOT, self.cmoe) if not os.path.isabs(self.cmoe) else self.cmoe
        trained = os.path.join(d, "trained.json")
        trained_now = not os.path.exists(trained)
        if trained_now:
            log = os.path.join(d, "train.log")
            sets = [a for s in r["sets"] for a in ("--set", s)]
            t0 = time.time()
            cmd = [cmoe, "train", "--config", r["config"], "--run-dir", d, *sets]
            if r["np"] > 1:
                cmd = [*self.study["mpirun"], "-np", str(r["np"]), *cmd]
            rc = self._run(cmd, log, env)
            if self.stopping.is_set():
                raise KeyboardInterrupt
            if rc != 0:
                raise StudyError(f"{d}: cmoe train exited {rc} (see {log})")
            write_json(trained, {"train_wall_s": time.time() - t0})
        result = {"spec": spec, "train_wall_s": json.load(open(trained))["train_wall_s"], "eval": {}, "eval_steps": {}}
        cfg = os.path.join(d, "config.textproto")
        eval_sets = [a for s in self.study["eval_set"] for a in ("--set", s)]
        for mode, ckpt, out in eval_outputs(r, self.study):
            if not os.path.exists(out):
                p = subprocess.run([cmoe, "eval", "--config", cfg, "--checkpoint", ckpt, *eval_sets, *eval_flags(mode),
                                    "--json"], env=env, cwd=ROOT, capture_output=True, text=True)
                if self.stopping.is_set():
                    raise KeyboardInterrupt
                if p.returncode != 0:
                    raise StudyError(f"{d}: cmoe eval ({mode}, {ckpt}) exited {p.returncode}: {p.stderr.strip()[-500:]}")
                line = [l for l in p.stdout.splitlines() if l.startswith("{")][-1]
                with open(out + ".tmp", "w") as f:
                    f.write(line + "\n")
                os.replace(out + ".tmp", out)
            e = json.load(open(out))
            if ckpt.endswith("checkpoints"):
                result["eval"][mode] = e
            else:
                result["eval_steps"].setdefault(mode, {})[str(e["step"])] = e
        p = subprocess.run([cmoe, "params", "--config", cfg, "--json"], cwd=ROOT, capture_output=True, text=True)
        if p.returncode != 0:
            raise StudyError(f"{d}: cmoe params exited {p.returncode}: {p.stderr.strip()}")
        result["params"] = json.loads(p.stdout)
        write_json(os.path.join(d, "study.json"), result)
        return result["train_wall_s"] if trained_now else None


def write_json(path, obj):
    with open(path + ".tmp", "w") as f:
        json.dump(obj, f, indent=1)
    os.replace(path + ".tmp", path)


def eval_outputs(r, study):
    """(mode, checkpoint, output file) of every evaluation a trained run needs: each mode on the
    final checkpoint (the checkpoints root, i.e. latest) and, with eval_checkpoints = "all", on
    every other step directory kept."""
    d = r["dir"]
    root = os.path.join(d, "checkpoints")
    out = [(m, root, os.path.join(d, f"eval_{m.replace(':', '-')}.json")) for m in r["eval"]]
    if study["eval_checkpoints"] == "all" and os.path.isdir(root):
        latest = open(os.path.join(root, "latest")).readline().strip() if os.path.exists(os.path.join(root, "latest")) else ""
        for step_dir in sorted(x for x in os.listdir(root) if x.startswith("step_") and x != latest):
            step = int(step_dir[len("step_"):])
            out += [(m, os.path.join(root, step_dir), os.path.join(d, f"eval_{m.replace(':', '-')}_step{step}.json"))
                    for m in r["eval"]]
    return out


def needs_work(r, study):
    d = r["dir"]
    if os.path.exists(os.path.join(d, "study.json")) and not os.path.exists(os.path.join(d, "trained.json")):
        # Written before trained.json existed: the training is done.
        write_json(os.path.join(d, "trained.json"), {"train_wall_s": json.load(open(os.path.join(d, "study.json")))["train_wall_s"]})
    if not os.path.exists(os.path.join(d, "trained.json")) or not os.path.exists(os.path.join(d, "study.json")):
        return True
    return any(not os.path.exists(out) for _, _, out in eval_outputs(r, study))


def run_all(study, runs, cmoe, jobs, threads):
    todo = [r for r in runs if needs_work(r, study)]
    print(f"study: {len(runs)} runs, {len(runs) - len(todo)} done, {len(todo)} to run "
          f"({jobs} at a time, OMP_NUM_THREADS={threads})", flush=True)
    if not todo:
        return []
    runner = Runner(study, cmoe, threads)
    failed = []
    old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

    def on_signal(signum, frame):
        print(f"\nstudy: {signal.Signals(signum).name}: stopping the running trainings at their next step "
              "(checkpointed); run the same command again to resume", flush=True)
        runner.stop()

    for s in old:
        signal.signal(s, on_signal)
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as ex:
            futs = {ex.submit(runner.run_one, r): r for r in todo}
            for n, fut in enumerate(concurrent.futures.as_completed(futs), 1):
                r = futs[fut]
                name = f"{r['variant']} seed {r['seed']} {layout_name(r)}"
                try:
                    wall = fut.result()
                    what = f"trained and evaluated ({wall:.0f} s of training)" if wall is not None else "evaluated"
                    print(f"study: [{n}/{len(todo)}] {what}: {name}", flush=True)
                except KeyboardInterrupt:
                    pass
                except StudyError as e:
                    failed.append(str(e))
                    print(f"study: [{n}/{len(todo)}] FAILED: {name}: {e}", flush=True)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    if runner.stopping.is_set():
        print("study: interrupted; finished runs are kept, the others resume from their checkpoints", flush=True)
        sys.exit(130)
    return failed


# ---------------------------------------------------------------- collecting

def read_jsonl(path):
    """Records of metrics.jsonl; a step's later record wins (a resumed run repeats steps)."""
    steps, vals = {}, {}
    if not os.path.exists(path):
        return [], []
    for line in open(path):
        line = line.strip()
        if not line:
            continue
        try:
            j = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by a crash
        if "loss" in j:
            steps[j["step"]] = j
        elif "val_loss" in j:
            vals[j["step"]] = j
    return [steps[k] for k in sorted(steps)], [vals[k] for k in sorted(vals)]


def collect(runs, step_every=1):
    """results.csv rows and the finished runs; step rows only every step_every steps (and the
    last), to keep a published CSV small."""
    rows, finished = [], []
    for r in runs:
        res_path = os.path.join(r["dir"], "study.json")
        if not os.path.exists(res_path):
            continue
        res = json.load(open(res_path))
        steps, vals = read_jsonl(os.path.join(r["dir"], "metrics.jsonl"))
        key = {"variant": r["variant"], "seed": r["seed"], "np": r["np"], "pp": r["pp"], "dp": r["dp"], "ep": r["ep"]}
        for s in steps:
            if s["step"] % step_every == 0 or s is steps[-1]:
                rows.append({"record": "step", **key, "step": s["step"], **{f: s.get(f, "") for f in STEP_FIELDS}})
        for v in vals:
            rows.append({"record": "val", **key, "step": v["step"], "val_loss": v["val_loss"], "val_ppl": v["val_ppl"],
                         "val_tokens": v["val_tokens"]})
        evals = [(mode, e) for mode, by_step in res.get("eval_steps", {}).items() for e in by_step.values()]
        evals += list(res["eval"].items())
        for mode, e in sorted(evals, key=lambda me: (me[1]["step"], me[0])):
            rows.append({"record": "eval", **key, "step": e["step"], "eval": mode, "val_loss": e["val_loss"],
                         "val_ppl": e["val_ppl"], "val_tokens": e["tokens"]})
        tps = median_tokens_per_s(steps)
        rows.append({"record": "run", **key, "step": steps[-1]["step"] if steps else "", "loss": steps[-1]["loss"] if steps else "",
                     "params_total": res["params"]["total"], "params_activated": res["params"]["activated"],
                     "median_tokens_per_s": f"{tps:.2f}" if tps else "", "train_wall_s": f"{res['train_wall_s']:.1f}",
                     "run_dir": os.path.relpath(r["dir"], ROOT) if r["dir"].startswith(ROOT) else r["dir"]})
        finished.append({**r, "result": res, "steps": steps, "vals": vals, "median_tokens_per_s": tps})
    return rows, finished


def median_tokens_per_s(steps):
    """Median over the steps after the first (which includes start-up work)."""
    v = [s["tokens_per_s"] for s in steps[1:]] or [s["tokens_per_s"] for s in steps]
    return statistics.median(v) if v else 0.0


def write_csv(path, rows):
    with open(path + ".tmp", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS, extrasaction="raise")
        w.writeheader()
        for r in rows:
            w.writerow(r)
    os.replace(path + ".tmp", path)


# ---------------------------------------------------------------- summarising

def mean_std(xs):
    xs = [x for x in xs if x is not None]
    if not xs:
        return None, None
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def fmt(m, s, digits=2):
    if m is None:
        return "—"
    return f"{m:.{digits}f} ± {s:.{digits}f}"


def summarise(study, finished):
    """Per (variant, layout): the numbers the tables and plots show."""
    groups = {}
    for f in finished:
        groups.setdefault((f["variant"], layout_name(f)), []).append(f)
    out = []
    for v in study["variants"]:
        for l in study["layouts"]:
            fs = groups.get((v["name"], layout_name(l)), [])
            if not fs:
                continue
            fs.sort(key=lambda f: f["seed"])
            ev = lambda f, mode, k: f["result"]["eval"].get(mode, {}).get(k)  # noqa: E731
            ppl = [ev(f, "normal", "val_ppl") for f in fs]
            dis = [ev(f, "disable_top1", "val_ppl") for f in fs]
            ratio = [d / p if d is not None and p else None for d, p in zip(dis, ppl)]
            # Every mode other than normal: PPL and its ratio to normal PPL, per seed.
            modes = {}
            for mode in v["eval"]:
                if mode == "normal":
                    continue
                mp = [ev(f, mode, "val_ppl") for f in fs]
                modes[mode] = {"ppl": mean_std(mp),
                               "ratio": mean_std([m / p if m is not None and p else None for m, p in zip(mp, ppl)])}
            # disable_top1 / normal at every evaluated checkpoint (eval_checkpoints = "all").
            by_step = {}
            for f in fs:
                pts = {}
                for mode in ("normal", "disable_top1"):
                    for e in [*f["result"].get("eval_steps", {}).get(mode, {}).values(), f["result"]["eval"].get(mode)]:
                        if e:
                            pts.setdefault(e["step"], {})[mode] = e["val_ppl"]
                for st, m in pts.items():
                    if "normal" in m and "disable_top1" in m:
                        by_step.setdefault(st, []).append(m["disable_top1"] / m["normal"])
            # How decided the routers were at the final checkpoint (mean over routers, then seeds).
            routers = {}
            for k in ("top1_prob", "entropy", "routed_gate"):
                per_seed = []
                for f in fs:
                    rs = f["result"]["eval"].get("normal", {}).get("routers", {})
                    xs = [x[k] for x in rs.values() if k in x]
                    per_seed.append(statistics.fmean(xs) if xs else None)
                routers[k] = mean_std(per_seed)
            out.append({
                "variant": v["name"], "layout": layout_name(l), "np": l["np"], "seeds": [f["seed"] for f in fs],
                "params_total": fs[0]["result"]["params"]["total"], "params_activated": fs[0]["result"]["params"]["activated"],
                "val_loss": mean_std([ev(f, "normal", "val_loss") for f in fs]),
                "val_ppl": mean_std(ppl), "val_ppl_seeds": ppl,
                "disable_top1_ppl": mean_std(dis), "disable_top1_ppl_seeds": dis,
                "disable_top1_ratio": mean_std(ratio), "modes": modes,
                "ratio_by_step": {st: mean_std(r) for st, r in sorted(by_step.items())}, "routers": routers,
                "tokens_per_s": mean_std([f["median_tokens_per_s"] for f in fs]),
                "final_train_loss": mean_std([f["steps"][-1]["loss"] if f["steps"] else None for f in fs]),
                "steps": fs[0]["steps"][-1]["step"] if fs[0]["steps"] else 0,
                "curves": {f["seed"]: [(x["step"], x["val_loss"]) for x in f["vals"]] for f in fs},
            })
    return out


def untouched(s):
    """True when disabling the top-1 expert changed nothing (no learned router: dense, hash)."""
    return all(d == p for d, p in zip(s["disable_top1_ppl_seeds"], s["val_ppl_seeds"]))


def plain_log_axis(ax):
    from matplotlib.ticker import ScalarFormatter
    for f in (ax.yaxis.set_major_formatter, ax.yaxis.set_minor_formatter):
        sf = ScalarFormatter()
        sf.set_scientific(False)
        f(sf)


def common_steps(summary):
    """Checkpoint steps evaluated for every variant with a disable-top1 evaluation (a run stopped
    and resumed keeps an extra checkpoint; the tables and plots leave such steps out)."""
    sets = [set(s["ratio_by_step"]) for s in summary if s["disable_top1_ppl"][0] is not None and s["ratio_by_step"]]
    return sorted(set.intersection(*sets)) if sets else []


def human(n):
    return f"{n / 1e9:.3f}B" if n >= 1e9 else f"{n / 1e6:.2f}M"


def save_png(fig, path, data):
    fig.savefig(path, dpi=80, metadata={"cmoe-data": json.dumps(data, sort_keys=True)})


def plots(summary, report_dir):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    made = []
    first_layout = summary[0]["layout"] if summary else None
    main = [s for s in summary if s["layout"] == first_layout]
    names = [s["variant"] for s in main]

    # Validation loss curves: mean over seeds, band = min..max.
    fig, ax = plt.subplots(figsize=(7, 4.2))
    data = {}
    for s in main:
        steps = sorted({st for c in s["curves"].values() for st, _ in c})
        mean = []
        for st in steps:
            vals = [v for c in s["curves"].values() for x, v in c if x == st]
            mean.append((st, statistics.fmean(vals), min(vals), max(vals)))
        data[s["variant"]] = [[st, m] for st, m, _, _ in mean]
        line, = ax.plot([m[0] for m in mean], [m[1] for m in mean], marker=".", label=s["variant"])
        ax.fill_between([m[0] for m in mean], [m[2] for m in mean], [m[3] for m in mean], alpha=0.15,
                        color=line.get_color())
    ax.set_xlabel("step")
    ax.set_ylabel("validation loss (nats)")
    ax.set_title(f"Validation loss, mean over seeds (band: min-max), {first_layout}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    # Zoom on the part where the variants separate: the last 60% of the steps.
    pts = [p for c in data.values() for p in c]
    if len(pts) > 2:
        last = max(p[0] for p in pts)
        later = [p[1] for p in pts if p[0] >= 0.4 * last] or [p[1] for p in pts]
        ax.set_ylim(min(p[1] for p in pts) - 0.02, max(later) + 0.02)
        ax.set_xlim(0.35 * last, last * 1.02)
    fig.tight_layout()
    save_png(fig, os.path.join(report_dir, "val_loss.png"), {"layout": first_layout, "mean_val_loss": data})
    plt.close(fig)
    made.append("val_loss.png")

    # Final PPL with seed error bars.
    fig, ax = plt.subplots(figsize=(7, 3.8))
    m = [s["val_ppl"][0] for s in main]
    e = [s["val_ppl"][1] for s in main]
    ax.bar(range(len(main)), m, yerr=e, capsize=4, color="#3b528b")
    for i, s in enumerate(main):
        ax.plot([i] * len(s["val_ppl_seeds"]), s["val_ppl_seeds"], "k.", ms=4)
    ax.set_xticks(range(len(main)), names, rotation=25, ha="right", fontsize=8)
    ax.set_ylabel("validation PPL")
    lo, hi = min(min(s["val_ppl_seeds"]) for s in main), max(max(s["val_ppl_seeds"]) for s in main)
    ax.set_ylim(max(0, lo - 0.25 * (hi - lo + 1)), hi + 0.15 * (hi - lo + 1))
    ax.set_title("Final validation PPL (bar: mean, error bar: std over seeds, dots: seeds)")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    save_png(fig, os.path.join(report_dir, "final_ppl.png"),
             {"layout": first_layout, "variants": names, "mean": m, "std": e,
              "seeds": {s["variant"]: s["val_ppl_seeds"] for s in main}})
    plt.close(fig)
    made.append("final_ppl.png")

    # Disable-top1 PPL next to normal PPL, log scale; variants it does not touch (no learned
    # router: dense, hash) are left out.
    dis = [s for s in main if s["disable_top1_ppl"][0] is not None and not untouched(s)]
    if dis:
        fig, ax = plt.subplots(figsize=(7, 3.8))
        x = range(len(dis))
        ax.bar([i - 0.2 for i in x], [s["val_ppl"][0] for s in dis], 0.4, yerr=[s["val_ppl"][1] for s in dis],
               capsize=3, label="normal", color="#3b528b")
        ax.bar([i + 0.2 for i in x], [s["disable_top1_ppl"][0] for s in dis], 0.4,
               yerr=[s["disable_top1_ppl"][1] for s in dis], capsize=3, label="top-1 disabled", color="#e3a31b")
        ax.set_yscale("log")
        ax.set_xticks(list(x), [s["variant"] for s in dis], rotation=25, ha="right", fontsize=8)
        ax.set_ylabel("validation PPL (log)")
        ax.set_title("Validation PPL with each token's top-1 expert disabled (mean ± std over seeds)", fontsize=10)
        plain_log_axis(ax)
        ax.legend(fontsize=8)
        ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        save_png(fig, os.path.join(report_dir, "disable_top1_ppl.png"),
                 {"layout": first_layout, "variants": [s["variant"] for s in dis],
                  "normal_mean": [s["val_ppl"][0] for s in dis],
                  "disable_top1_mean": [s["disable_top1_ppl"][0] for s in dis],
                  "disable_top1_std": [s["disable_top1_ppl"][1] for s in dis]})
        plt.close(fig)
        made.append("disable_top1_ppl.png")

    # Disable-top1 degradation against training step (when several checkpoints were evaluated).
    grow = [s for s in main if len(s["ratio_by_step"]) > 1 and s["disable_top1_ppl"][0] is not None and not untouched(s)]
    steps = common_steps(grow)
    if grow and len(steps) > 1:
        fig, ax = plt.subplots(figsize=(7, 3.8))
        data = {}
        for s in grow:
            pts = [(st, *s["ratio_by_step"][st]) for st in steps]
            data[s["variant"]] = [[st, m] for st, m, _ in pts]
            ax.errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=[p[2] for p in pts], marker="o", capsize=3,
                        label=s["variant"])
        ax.set_yscale("log")
        ax.set_xlabel("training step of the checkpoint")
        ax.set_ylabel("PPL top-1 disabled / PPL")
        ax.set_title("PPL with top-1 disabled / PPL, by checkpoint (mean ± std over seeds)", fontsize=10)
        plain_log_axis(ax)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
        fig.tight_layout()
        save_png(fig, os.path.join(report_dir, "disable_top1_by_step.png"), {"layout": first_layout, "ratio": data})
        plt.close(fig)
        made.append("disable_top1_by_step.png")

    # Throughput and scaling efficiency against rank count.
    scal = scaling(summary)
    if scal:
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.6))
        for v, pts in scal.items():
            a1.plot([p["np"] for p in pts], [p["tokens_per_s"] for p in pts], marker="o", label=v)
            a2.plot([p["np"] for p in pts], [p["efficiency"] for p in pts], marker="o", label=v)
        a1.set_xlabel("ranks")
        a1.set_ylabel("tokens/s (median step)")
        a2.set_xlabel("ranks")
        a2.set_ylabel("scaling efficiency")
        a2.axhline(1.0, color="gray", lw=0.8, ls="--")
        for a in (a1, a2):
            a.grid(alpha=0.3)
        a1.legend(fontsize=7)
        fig.tight_layout()
        save_png(fig, os.path.join(report_dir, "scaling.png"), scal)
        plt.close(fig)
        made.append("scaling.png")
    return made


def scaling(summary):
    """Per variant, when it ran at several rank counts: tokens/s and efficiency
    tps(N) / (N * tps(1 rank)) at each layout (the smallest rank count is the base)."""
    out = {}
    by_v = {}
    for s in summary:
        by_v.setdefault(s["variant"], []).append(s)
    for v, ss in by_v.items():
        if len({s["np"] for s in ss}) < 2:
            continue
        ss = sorted(ss, key=lambda s: (s["np"], s["layout"]))
        base = ss[0]
        out[v] = [{"layout": s["layout"], "np": s["np"], "tokens_per_s": s["tokens_per_s"][0],
                   "efficiency": s["tokens_per_s"][0] * base["np"] / (s["np"] * base["tokens_per_s"][0])} for s in ss]
    return out


def write_report(study, summary, made, report_dir, failed, n_runs, n_done, command):
    L = [f"# {study['title']}", ""]
    if study["description"]:
        L += [study["description"].strip(), ""]
    L += [f"Generated by `scripts/study.py` from `{os.path.relpath(os.path.abspath(study['path']), ROOT)}`: "
          f"{n_done} of {n_runs} runs finished. Regenerate with:", "", "```", command, "```", "",
          "Mean ± sample standard deviation over seeds. PPL = exp(validation loss) of the final checkpoint "
          "(`cmoe eval`); top-1 disabled: `cmoe eval --disable-top1`; ratio = disabled PPL / normal PPL per seed, "
          "then averaged. tokens/s: the median step of each run, then averaged over seeds.", ""]
    for lay in dict.fromkeys(s["layout"] for s in summary):
        rows = [s for s in summary if s["layout"] == lay]
        L += [f"## {lay}", "",
              "| variant | params total / activated | steps | seeds | final train loss | val loss | val PPL | "
              "PPL top-1 disabled | ratio | tokens/s |",
              "|---|---|---|---|---|---|---|---|---|---|"]
        for s in rows:
            L.append(f"| {s['variant']} | {human(s['params_total'])} / {human(s['params_activated'])} | {s['steps']} | "
                     f"{len(s['seeds'])} | {fmt(*s['final_train_loss'], 3)} | {fmt(*s['val_loss'], 4)} | "
                     f"{fmt(*s['val_ppl'])} | {fmt(*s['disable_top1_ppl'])} | {fmt(*s['disable_top1_ratio'])} | "
                     f"{fmt(*s['tokens_per_s'], 0)} |")
        L.append("")
    first = [s for s in summary if s["layout"] == summary[0]["layout"]] if summary else []
    steps = common_steps(first)
    if len(steps) > 1:
        L += ["## Top-1 disabled, by checkpoint", "",
              "PPL with the top-1 expert disabled / normal PPL of the same checkpoint, mean ± std over seeds.", "",
              "| variant | " + " | ".join(f"step {st}" for st in steps) + " |", "|---|" + "---|" * len(steps)]
        for s in first:
            if s["disable_top1_ppl"][0] is None:
                continue
            L.append(f"| {s['variant']} | " + " | ".join(fmt(*s["ratio_by_step"].get(st, (None, None))) for st in steps)
                     + " |")
        L.append("")
    extra = [(s, m) for s in first for m in s["modes"] if m != "disable_top1"]
    if extra:
        L += ["## Other evaluation modes (final checkpoint)", "", "| variant | mode | PPL | ratio to normal PPL |",
              "|---|---|---|---|"]
        for s, m in extra:
            L.append(f"| {s['variant']} | `{m}` | {fmt(*s['modes'][m]['ppl'])} | {fmt(*s['modes'][m]['ratio'])} |")
        L.append("")
    if any(s["routers"]["top1_prob"][0] is not None for s in first):
        L += ["## Routers at the final checkpoint", "",
              "Mean over the variant's routers, then over seeds (`cmoe eval` on the normal model; docs/metrics.md): "
              "the top-1 probability, the routing entropy in nats, and the routed output's gate weight against the "
              "shared expert's (1 without one).", "",
              "| variant | top-1 probability | entropy | routed gate |", "|---|---|---|---|"]
        for s in first:
            r = s["routers"]
            if r["routed_gate"][0] is None:
                continue
            L.append(f"| {s['variant']} | {fmt(*r['top1_prob'], 3)} | {fmt(*r['entropy'], 3)} | "
                     f"{fmt(*r['routed_gate'], 3)} |")
        L.append("")
    scal = scaling(summary)
    if scal:
        L += ["## Scaling", "", "Efficiency = tokens/s at N ranks / (N x tokens/s at the smallest rank count).", "",
              "| variant | layout | ranks | tokens/s | efficiency |", "|---|---|---|---|---|"]
        for v, pts in scal.items():
            for p in pts:
                L.append(f"| {v} | {p['layout']} | {p['np']} | {p['tokens_per_s']:.0f} | {p['efficiency']:.2f} |")
        L.append("")
    if made:
        L += ["## Plots", ""] + [f"![{m[:-4]}]({m})" for m in made] + [""]
    if failed:
        L += ["## Failed runs", ""] + [f"- {f}" for f in failed] + [""]
    with open(os.path.join(report_dir, "report.md"), "w") as f:
        f.write("\n".join(L))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("study")
    ap.add_argument("--out", required=True, help="study directory: runs/ under it (and the report, by default)")
    ap.add_argument("--report-dir", help="where results.csv, report.md and the PNGs go (default: --out)")
    ap.add_argument("--cmoe", help="cmoe binary (default: the study file's 'cmoe', else build/bin/cmoe)")
    ap.add_argument("--jobs", type=int, default=1, help="runs trained at once (default 1)")
    ap.add_argument("--threads", type=int, help="OMP_NUM_THREADS of each process (default: cores / jobs)")
    ap.add_argument("--report-only", action="store_true", help="run nothing; summarise the finished runs")
    ap.add_argument("--list", action="store_true", help="print the runs and whether each is done")
    ap.add_argument("--csv-step-every", type=int, default=1, metavar="K",
                    help="results.csv: step rows every K steps and the last (default 1: every step)")
    a = ap.parse_args()
    try:
        study = load_study(a.study)
        out = os.path.abspath(a.out)
        report_dir = os.path.abspath(a.report_dir or a.out)
        runs = plan_runs(study, out)
        if a.list:
            for r in runs:
                done = os.path.exists(os.path.join(r["dir"], "study.json"))
                print(f"{'done' if done else 'todo'}  {r['variant']}  seed {r['seed']}  {layout_name(r)}  {r['dir']}")
            return 0
        if a.jobs < 1 or (a.threads is not None and a.threads < 1) or a.csv_step_every < 1:
            raise StudyError("--jobs, --threads and --csv-step-every must be >= 1")
        threads = a.threads or max(1, (os.cpu_count() or 1) // a.jobs)
        cmoe = a.cmoe or study["cmoe"]
        if not os.path.exists(cmoe if os.path.isabs(cmoe) else os.path.join(ROOT, cmoe)):
            raise StudyError(f"cmoe binary {cmoe} not found (build it: scripts/build.sh, or pass --cmoe)")
        failed = [] if a.report_only else run_all(study, runs, cmoe, a.jobs, threads)
        rows, finished = collect(runs, a.csv_step_every)
        os.makedirs(report_dir, exist_ok=True)
        write_csv(os.path.join(report_dir, "results.csv"), rows)
        summary = summarise(study, finished)
        made = plots(summary, report_dir) if summary else []
        command = shlex.join(["scripts/study.py", os.path.relpath(os.path.abspath(a.study), ROOT), "--out",
                              os.path.relpath(out, ROOT)] +
                             (["--report-dir", os.path.relpath(report_dir, ROOT)] if a.report_dir else []) +
                             (["--jobs", str(a.jobs)] if a.jobs != 1 else []) +
                             (["--threads", str(a.threads)] if a.threads else []) +
                             (["--csv-step-every", str(a.csv_step_every)] if a.csv_step_every != 1 else []))
        write_report(study, summary, made, report_dir, failed, len(runs), len(finished), command)
        print(f"study: {len(finished)}/{len(runs)} runs finished; wrote {report_dir}/results.csv, report.md"
              + (", " + ", ".join(made) if made else ""))
        return 1 if failed else 0
    except StudyError as e:
        print(f"study: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
