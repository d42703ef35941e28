"""crosscheck.py — cmoe against a float64 PyTorch reference (cmoe_ref.py), every FFN variant.

Runs the C++ half (torch_crosscheck: forward + backward of each variant on a fixed batch),
exports each variant's checkpoint with `cmoe export`, loads the export in PyTorch, recomputes
loss and gradients in float64 and compares them with cmoe's float32 results:
  loss, ce, aux:  |cmoe - ref| <= 1e-4 * |ref| (+1e-7 absolute for aux, which can be ~0)
  gradients:      per tensor, max |g_cmoe - g_ref| <= 1e-4 * max |g_ref| + 1e-7 * max over
                  all tensors of max |g_ref|  (the second term only matters for tensors whose
                  gradient is ~0, e.g. an expert only ignored tokens reached)
  routers:        expert counts equal exactly; balance term to 1e-5 relative
Also checks the export command's two checkpoint forms (root with `latest`, step directory)
and its bf16 option. Exits non-zero on any mismatch, and when torch cannot be imported (the
test setup installs python3-torch: a missing torch is a broken setup, not a skip).

usage: crosscheck.py --crosscheck-bin PATH --cmoe PATH [--workdir DIR] [--keep]
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile

try:
    import torch
except ImportError as e:  # pragma: no cover - the failure path itself
    print(f"crosscheck: FAIL: cannot import torch ({e}); install python3-torch (scripts/install-deps.sh)",
          file=sys.stderr)
    sys.exit(1)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cmoe_ref  # noqa: E402

LOSS_RTOL = 1e-4
GRAD_RTOL = 1e-4
GRAD_FLOOR = 1e-7


def run(cmd):
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        print(r.stdout)
        raise SystemExit(f"crosscheck: FAIL: {' '.join(cmd)} exited with {r.returncode}")
    return r.stdout


def check_variant(vdir, cmoe_bin, form):
    import json
    name = os.path.basename(vdir)
    failures = []
    ck = os.path.join(vdir, "ckpt")
    if form == "step":
        ck = os.path.join(ck, open(os.path.join(ck, "latest")).readline().strip())
    out = os.path.join(vdir, "export", "model.safetensors")
    run([cmoe_bin, "export", "--checkpoint", ck, "--format", "safetensors", "--out", out])
    tensors, cfg = cmoe_ref.load_export(out)
    batch, _ = cmoe_ref.load_safetensors(os.path.join(vdir, "batch.safetensors"))
    grads, _ = cmoe_ref.load_safetensors(os.path.join(vdir, "grads.safetensors"))
    with open(os.path.join(vdir, "result.json")) as f:
        res = json.load(f)

    W = cmoe_ref.trainable(tensors, torch.float64)
    ref = cmoe_ref.forward(W, cfg, batch["ids"], batch["targets"])
    ref["loss"].backward()

    def close(what, got, want, atol=0.0):
        err = abs(got - want)
        ok = err <= LOSS_RTOL * abs(want) + atol
        if not ok:
            failures.append(f"{what}: cmoe {got:.9g} vs torch {want:.9g} (rel err {err / max(abs(want), 1e-30):.2e})")
        return err / max(abs(want), 1e-30)

    loss_rel = close("loss", res["loss"], float(ref["loss"]))
    close("ce", res["ce"], float(ref["ce"]))
    close("aux", res["aux"], float(ref["aux"]) if ref["aux"] is not None else 0.0, atol=1e-7)
    if res["tokens"] != ref["tokens"]:
        failures.append(f"tokens: {res['tokens']} vs {ref['tokens']}")
    if set(res["routers"]) != set(ref["routers"]):
        failures.append(f"routers: {sorted(res['routers'])} vs {sorted(ref['routers'])}")
    for r, rep in ref["routers"].items():
        got = res["routers"].get(r)
        if got is None:
            continue
        if got["counts"] != rep["counts"]:
            failures.append(f"{r} expert counts: cmoe {got['counts']} vs torch {rep['counts']}")
        if rep["aux"] is not None and abs(got["aux"] - rep["aux"]) > 1e-5 * abs(rep["aux"]):
            failures.append(f"{r} balance term: cmoe {got['aux']:.9g} vs torch {rep['aux']:.9g}")

    params = {n: t for n, t in W.items() if not cmoe_ref.is_buffer(n)}
    if set(params) != set(grads):
        failures.append(f"gradient names differ: only in export {sorted(set(params) - set(grads))[:5]}, "
                        f"only in grads {sorted(set(grads) - set(params))[:5]}")
    gmax = max(float(p.grad.abs().max()) for p in params.values() if p.grad is not None)
    worst = 0.0
    for n, p in params.items():
        if n not in grads:
            continue
        g_ref = p.grad if p.grad is not None else torch.zeros_like(p)
        g = grads[n].to(torch.float64)
        err = float((g - g_ref).abs().max())
        scale = float(g_ref.abs().max())
        tol = GRAD_RTOL * scale + GRAD_FLOOR * gmax
        worst = max(worst, err / max(scale, 1e-30) if scale > 0 else 0.0)
        if err > tol:
            failures.append(f"grad {n}: max abs err {err:.3e} > tol {tol:.3e} (max |g| {scale:.3e})")
    # The bf16 export is the f32 one rounded to nearest even.
    if name == "cartesian":
        out16 = os.path.join(vdir, "export16", "model.safetensors")
        run([cmoe_bin, "export", "--checkpoint", ck, "--out", out16, "--dtype", "bf16"])
        t16, cfg16 = cmoe_ref.load_export(out16)
        if cfg16.get("torch_dtype") != "bfloat16":
            failures.append("bf16 export: config.json torch_dtype is not bfloat16")
        for n, t in tensors.items():
            want = t.to(torch.bfloat16) if t.dtype == torch.float32 else t
            if t16[n].dtype != want.dtype or not torch.equal(t16[n], want):
                failures.append(f"bf16 export: {n} is not the f32 weight rounded to bf16")
                break
    print(f"{name:<22} loss {res['loss']:.6f} (torch {float(ref['loss']):.6f}, rel {loss_rel:.1e})  "
          f"worst grad rel err {worst:.1e}  {len(params)} tensors  {'ok' if not failures else 'FAIL'}")
    return [f"{name}: {f}" for f in failures]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--crosscheck-bin", required=True)
    ap.add_argument("--cmoe", required=True)
    ap.add_argument("--workdir")
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(1)
    work = a.workdir or tempfile.mkdtemp(prefix="cmoe_crosscheck_")
    try:
        print(run([a.crosscheck_bin, work]), end="")
        variants = sorted(d for d in os.listdir(work) if os.path.isdir(os.path.join(work, d)))
        if len(variants) < 10:
            raise SystemExit(f"crosscheck: FAIL: expected 10 variants, found {variants}")
        failures = []
        for i, v in enumerate(variants):
            failures += check_variant(os.path.join(work, v), a.cmoe, "step" if i % 2 else "root")
    finally:
        if not a.keep and not a.workdir:
            shutil.rmtree(work, ignore_errors=True)
    if failures:
        print("crosscheck: FAIL", *failures, sep="\n  ", file=sys.stderr)
        sys.exit(1)
    print(f"crosscheck: all {len(variants)} variants agree with PyTorch (float64)")


if __name__ == "__main__":
    main()
