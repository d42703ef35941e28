"""torch_peer.py — the PyTorch eager peer of cmoe's training-step benchmark (cpu-small).

The same model as cmoe (LLaMA-style decoder, RoPE, causal attention, SwiGLU, MoE every other
layer; cartesian / smoe / fine_grained), written the way a careful engineer writes MoE in
eager PyTorch: routers in fp32, sort-by-expert dispatch (argsort of the flat expert ids,
bincount for the segment sizes, one index_select to gather, one matmul per expert weight
over its contiguous segment, one index_add to combine), fused cross-entropy from PyTorch,
torch.optim.AdamW (foreach) with clipping, bf16 through torch.autocast("cpu").

Reports one JSON line like bench/train_step_bench.cpp:
  tokens_per_s = B * T * steps / wall seconds of the timed steps (after warm-up)
  max_rss_mb   = the process's max resident set (getrusage)

usage: torch_peer.py --variant cartesian|smoe|fine_grained --precision f32|bf16
                     [--steps 3] [--warmup 1] [--threads 2]
"""

import argparse
import json
import math
import resource
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

# cpu-small (configs/cpu-small.textproto)
V, D_MODEL, LAYERS, HEADS, FFN, SEQ, BATCH = 8192, 256, 6, 8, 1024, 256, 8
N_EXPERTS, TOP_K, INTERVAL, AUX_COEF, EPS, THETA = 16, 2, 2, 0.01, 1e-5, 10000.0


class RMSNorm(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x):
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + EPS)).to(x.dtype) * self.weight.to(x.dtype)


def init_(t, std=0.02):
    return nn.init.normal_(t, 0.0, std)


class SwiGLU(nn.Module):
    def __init__(self, d, f):
        super().__init__()
        self.w1 = nn.Parameter(init_(torch.empty(f, d)))
        self.w3 = nn.Parameter(init_(torch.empty(f, d)))
        self.w2 = nn.Parameter(init_(torch.empty(d, f)))

    def forward(self, x):
        return F.linear(F.silu(F.linear(x, self.w1)) * F.linear(x, self.w3), self.w2)


class RoutedMoE(nn.Module):
    """y = c0 * sum_j w_j FFN_{I_j}(u) + c1 * shared(u), top-k softmax router in fp32."""

    def __init__(self, d, n_experts, f, k, shared_hidden, n_shared):
        super().__init__()
        self.E, self.k = n_experts, k
        self.router = nn.Parameter(init_(torch.empty(n_experts, d)))
        self.w1 = nn.Parameter(init_(torch.empty(n_experts, f, d)))
        self.w3 = nn.Parameter(init_(torch.empty(n_experts, f, d)))
        self.w2 = nn.Parameter(init_(torch.empty(n_experts, d, f)))
        self.shared = nn.ModuleList([SwiGLU(d, shared_hidden) for _ in range(n_shared)])
        self.gate = nn.Linear(d, 2) if n_shared else None
        if self.gate is not None:
            init_(self.gate.weight)
            nn.init.zeros_(self.gate.bias)

    def forward(self, u):
        N = u.shape[0]
        with torch.autocast("cpu", enabled=False):
            logits = F.linear(u.float(), self.router)
            s = logits.softmax(-1)
            p, idx = s.topk(self.k, -1)
            w = p / p.sum(-1, keepdim=True).clamp_min(1e-9)
            counts = torch.bincount(idx.flatten(), minlength=self.E)
            f = counts.float() / (N * self.k)
            aux = AUX_COEF * self.E * (f * s.mean(0)).sum()
        flat = idx.flatten()
        order = torch.argsort(flat, stable=True)            # pairs sorted by expert
        tok = order // self.k                                # token of each sorted pair
        xs = u.index_select(0, tok)                          # (N*k, d)
        outs = []
        for e, (lo, hi) in enumerate(zip(*_bounds(counts))):
            if hi == lo:
                continue
            xe = xs[lo:hi]
            he = F.silu(xe @ self.w1[e].t().to(xe.dtype)) * (xe @ self.w3[e].t().to(xe.dtype))
            outs.append(he @ self.w2[e].t().to(he.dtype))
        ys = torch.cat(outs) * w.flatten().index_select(0, order)[:, None].to(outs[0].dtype)
        routed = torch.zeros(N, u.shape[1], dtype=torch.float32).index_add_(0, tok, ys.float())
        if self.gate is None:
            return routed, aux
        sh = self.shared[0](u)
        if len(self.shared) == 2:
            sh = 0.5 * (sh + self.shared[1](u))
        with torch.autocast("cpu", enabled=False):
            c = self.gate(u.float()).softmax(-1)
        return c[:, :1] * routed + c[:, 1:] * sh, aux


def _bounds(counts):
    ends = torch.cumsum(counts, 0).tolist()
    starts = [0] + ends[:-1]
    return starts, ends


class Block(nn.Module):
    def __init__(self, layer, variant):
        super().__init__()
        d = D_MODEL
        self.ln_in, self.ln_post = RMSNorm(d), RMSNorm(d)
        self.wqkv = nn.Parameter(init_(torch.empty(3 * d, d)))
        self.wo = nn.Parameter(init_(torch.empty(d, d)))
        self.moe = layer % INTERVAL == 0
        if not self.moe:
            self.ffn = SwiGLU(d, FFN)
        elif variant == "cartesian":
            self.A = RoutedMoE(d, N_EXPERTS, FFN // 2, TOP_K, FFN // 2, 1)
            self.ln_b = RMSNorm(d)
            self.B = RoutedMoE(d, N_EXPERTS, FFN // 2, TOP_K, FFN // 2, 1)
        elif variant == "smoe":
            self.A = RoutedMoE(d, N_EXPERTS, FFN, TOP_K, FFN, 1)
        else:  # fine_grained
            self.A = RoutedMoE(d, 2 * N_EXPERTS, FFN // 2, 2 * TOP_K, FFN // 2, 2)
        self.variant = variant

    def forward(self, x, cos, sin):
        B, T, d = x.shape
        H, Dh = HEADS, d // HEADS
        q, k, v = F.linear(self.ln_in(x), self.wqkv).view(B, T, 3, H, Dh).permute(2, 0, 3, 1, 4)
        q, k = rope(q, cos, sin), rope(k, cos, sin)
        att = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(Dh))
        att = att.masked_fill(_causal(T), float("-inf")).softmax(-1)
        o = (att @ v).transpose(1, 2).reshape(B, T, d)
        h = x + F.linear(o, self.wo)
        u = self.ln_post(h)
        if not self.moe:
            return h + self.ffn(u), None
        hf, uf = h.view(B * T, d), u.view(B * T, d)
        y, aux = self.A(uf)
        hf = hf + y
        if self.variant == "cartesian":
            y2, aux2 = self.B(self.ln_b(hf))
            hf, aux = hf + y2, aux + aux2
        return hf.view(B, T, d), aux


_MASKS = {}


def _causal(T):
    if T not in _MASKS:
        _MASKS[T] = torch.ones(T, T, dtype=torch.bool).triu(1)
    return _MASKS[T]


def rope(x, cos, sin):  # x (B, H, T, Dh), rotate_half
    half = x.shape[-1] // 2
    return x * cos + torch.cat([-x[..., half:], x[..., :half]], -1) * sin


class Model(nn.Module):
    def __init__(self, variant):
        super().__init__()
        self.embed = nn.Parameter(init_(torch.empty(V, D_MODEL)))
        self.blocks = nn.ModuleList([Block(l, variant) for l in range(LAYERS)])
        self.norm = RMSNorm(D_MODEL)
        self.head = nn.Parameter(init_(torch.empty(V, D_MODEL)))
        Dh = D_MODEL // HEADS
        inv = THETA ** (-torch.arange(Dh // 2, dtype=torch.float64) * 2.0 / Dh)
        ang = torch.arange(SEQ, dtype=torch.float64)[:, None] * inv[None, :]
        self.cos = torch.cat([ang.cos(), ang.cos()], -1).float()
        self.sin = torch.cat([ang.sin(), ang.sin()], -1).float()

    def forward(self, ids, targets):
        x = F.embedding(ids, self.embed)
        aux = 0.0
        for b in self.blocks:
            x, a = b(x, self.cos.to(x.dtype), self.sin.to(x.dtype))
            if a is not None:
                aux = aux + a
        logits = F.linear(self.norm(x), self.head)
        ce = F.cross_entropy(logits.view(-1, V).float(), targets.view(-1), ignore_index=-1)
        return ce + aux, ce


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--variant", default="cartesian", choices=["cartesian", "smoe", "fine_grained"])
    ap.add_argument("--precision", default="f32", choices=["f32", "bf16"])
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(1234)
    model = Model(a.variant)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=3e-4, betas=(0.9, 0.95), eps=1e-8, foreach=True)
    gen = torch.Generator().manual_seed(1)

    def step():
        ids = torch.randint(0, V, (BATCH, SEQ), generator=gen)
        targets = torch.randint(0, V, (BATCH, SEQ), generator=gen)
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.precision == "bf16"):
            loss, ce = model(ids, targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return time.perf_counter() - t0, float(ce)

    for _ in range(a.warmup):
        step()
    secs, ce = 0.0, 0.0
    for _ in range(a.steps):
        s, ce = step()
        secs += s
    tps = BATCH * SEQ * a.steps / secs
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(json.dumps({"impl": "torch", "variant": a.variant, "precision": a.precision, "threads": a.threads,
                      "tokens_per_s": round(tps, 1), "step_s": round(secs / a.steps, 4), "max_rss_mb": round(rss, 1),
                      "loss": round(ce, 4), "steps": a.steps, "torch": torch.__version__}))


if __name__ == "__main__":
    main()
