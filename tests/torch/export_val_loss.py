"""export_val_loss.py — a PyTorch user reproduces cmoe's validation loss from `cmoe export`.

  1. make_test_dataset writes a Megatron dataset; `cmoe train` trains the tiny config briefly.
  2. `cmoe eval --json` gives the checkpoint's validation loss and token count.
  3. `cmoe export` writes model.safetensors + config.json; cmoe_ref.py loads them.
  4. The validation samples come from `cmoe data samples --split-name valid`, with exactly the
     parameters `cmoe eval` gives its loader (launch/cmd_train.cpp open_loader): the training
     prefix and data.split, seq_len T, num_samples = eval_batches * micro_batch_size,
     seed = train.seed. Global sample k is row k % B of eval batch k // B; ids are its tokens
     [0, T), targets [1, T] (data/loader.h).
  5. PyTorch computes the loss in float64 batch by batch as `cmoe eval` does (the CE of each
     batch, weighted by its tokens; no router losses) and it must equal cmoe's to 1e-4 relative,
     over the same number of tokens. The model must also have learned something (loss below
     ln V - 0.3), so the export is not the initialisation.
Exits non-zero on any mismatch, and when torch cannot be imported.

usage: export_val_loss.py --cmoe PATH --make-dataset PATH --config tiny.textproto [--keep DIR]
"""

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile

try:
    import torch
except ImportError as e:  # pragma: no cover - the failure path itself
    print(f"export_val_loss: FAIL: cannot import torch ({e}); install python3-torch (scripts/install-deps.sh)",
          file=sys.stderr)
    sys.exit(1)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cmoe_ref  # noqa: E402

RTOL = 1e-4
SEED = 1234
EVAL_BATCHES = 3
B, T = 4, 32  # micro_batch_size, seq_len (set explicitly below)


def run(cmd):
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        print(r.stdout, r.stderr, sep="\n")
        raise SystemExit(f"export_val_loss: FAIL: {' '.join(cmd)} exited with {r.returncode}")
    return r.stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cmoe", required=True)
    ap.add_argument("--make-dataset", required=True)
    ap.add_argument("--config", required=True)
    ap.add_argument("--keep", help="work in this directory and keep it")
    a = ap.parse_args()
    torch.set_num_threads(1)
    work = a.keep or tempfile.mkdtemp(prefix="cmoe_export_val_")
    os.makedirs(work, exist_ok=True)
    try:
        data = os.path.join(work, "data")
        run([a.make_dataset, data, "512", "300", "5"])
        sets = ["--set", f"data.prefix={data}", "--set", f"train.seed={SEED}", "--set", "train.steps=16",
                "--set", "train.lr=0.01", "--set", "train.min_lr=0.001", "--set", "checkpoint.interval=16",
                "--set", "train.eval_interval=16", "--set", f"train.eval_batches={EVAL_BATCHES}",
                "--set", f"train.micro_batch_size={B}", "--set", f"model.seq_len={T}"]
        run_dir = os.path.join(work, "run")
        run([a.cmoe, "train", "--config", a.config, "--run-dir", run_dir] + sets)
        ck = os.path.join(run_dir, "checkpoints")
        ev = json.loads(run([a.cmoe, "eval", "--config", a.config, "--checkpoint", ck, "--json"] + sets))
        out = os.path.join(work, "export", "model.safetensors")
        run([a.cmoe, "export", "--checkpoint", ck, "--out", out])
        W, cfg = cmoe_ref.load_export(out)
        W = {n: (t.to(torch.float64) if t.is_floating_point() else t) for n, t in W.items()}

        N = EVAL_BATCHES * B
        samples = json.loads(run([a.cmoe, "data", "samples", data, "--seq-length", str(T), "--num-samples", str(N),
                                  "--seed", str(SEED), "--split", "969,30,1", "--split-name", "valid", "--json"]))
        toks = torch.tensor([s["tokens"] for s in samples["samples"]], dtype=torch.int64)
        if toks.shape != (N, T + 1):
            raise SystemExit(f"export_val_loss: FAIL: samples shape {tuple(toks.shape)}, expected {(N, T + 1)}")

        total, tokens = 0.0, 0
        with torch.no_grad():
            for b in range(EVAL_BATCHES):
                rows = toks[b * B:(b + 1) * B]
                r = cmoe_ref.forward(W, cfg, rows[:, :T], rows[:, 1:])
                total += float(r["ce"]) * r["tokens"]
                tokens += r["tokens"]
        ref = total / tokens
        got = ev["val_loss"]
        rel = abs(got - ref) / abs(ref)
        print(f"step {ev['step']}: cmoe eval val_loss {got:.6f} over {ev['tokens']} tokens; "
              f"PyTorch (float64, from the export) {ref:.6f} over {tokens} tokens; rel err {rel:.2e}")
        failures = []
        if ev["step"] != 16:
            failures.append(f"eval loaded step {ev['step']}, expected 16")
        if ev["tokens"] != tokens:
            failures.append(f"token counts differ: cmoe {ev['tokens']}, torch {tokens}")
        if rel > RTOL:
            failures.append(f"val loss: cmoe {got:.6f} vs torch {ref:.6f} (rel err {rel:.2e} > {RTOL})")
        if not ref < math.log(cfg["vocab_size"]) - 0.3:
            failures.append(f"val loss {ref:.4f} is not below ln V - 0.3: the export looks untrained")
    finally:
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
    if failures:
        print("export_val_loss: FAIL", *failures, sep="\n  ", file=sys.stderr)
        sys.exit(1)
    print("export_val_loss: the PyTorch validation loss from the export equals cmoe eval's")


if __name__ == "__main__":
    main()
