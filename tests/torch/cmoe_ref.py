"""cmoe_ref.py — a plain PyTorch implementation of cmoe's model, loaded from `cmoe export`.

It is the reference the cross-check (crosscheck.py) compares cmoe against, and a working
example of how a PyTorch user reads an export: model.safetensors (tensor names in
docs/export.md) and config.json beside it. Written for clarity, not speed: every expert runs
on the tokens routed to it by a boolean mask, in whatever dtype the weights are given
(the cross-check uses float64).

Forward pass (docs/model.md, moe/model.h, moe/router.h):
  x = embed(ids)
  per layer:  h = x + o_proj(attn(rope(q_proj a), rope(k_proj a), v_proj a)),  a = rms_in(x)
              dense: x = h + mlp(rms_post(h));  moe: x = h + M(rms_post(h))
              cartesian: h1 = h + M0(rms_post(h));  x = h1 + M1(mlp_layernorm(h1))
  loss = mean over targets >= 0 of CE(lm_head(rms_f(x))) + sum over routers of aux + z losses
  M(u) = c0 * sum_j w_j FFN_{I_j}(u) + c1 * S(u),  c = softmax(coefficient(u)) (S: res_mlp)
Routers (float, over all E experts): s = softmax(wg u); top-k of s + bias (ties: lower id),
w = s_I / max(sum s_I, 1e-9) when k > 1; top-p keeps experts in descending s until the
cumulative s first exceeds p (that one kept), w = s; hash: experts from hash_table, w = 1/k.
aux = coef * E * sum_e f_e P_e (f_e = share of routed pairs, no gradient; P_e = mean_n s_ne),
z = coef * mean_n logsumexp(wg u_n)^2.
"""

import json
import math
import os
import struct

import torch
import torch.nn.functional as F

_DTYPES = {"F32": torch.float32, "BF16": torch.bfloat16, "I32": torch.int32, "I64": torch.int64, "F64": torch.float64}


def load_safetensors(path):
    """Returns ({name: tensor}, metadata) from a safetensors file (no extra packages needed)."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", {})
    buf = bytearray(data[8 + n:])
    out = {}
    for name, e in header.items():
        b, end = e["data_offsets"]
        dt = _DTYPES[e["dtype"]]
        count = math.prod(e["shape"])
        t = torch.frombuffer(buf, dtype=dt, count=count, offset=b) if count else torch.empty(0, dtype=dt)
        assert t.numel() * t.element_size() == end - b, name
        out[name] = t.reshape(e["shape"]).clone()
    return out, meta


def load_export(path):
    """Loads model.safetensors and the config.json beside it."""
    tensors, _ = load_safetensors(path)
    with open(os.path.join(os.path.dirname(path) or ".", "config.json")) as f:
        cfg = json.load(f)
    return tensors, cfg


def is_buffer(name):
    """Tensors that are not trained parameters (no gradient)."""
    return name.endswith(".hash_table") or name.endswith(".e_score_correction_bias")


def rmsnorm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rope(x, theta):
    """x: (B, T, H, Dh); Hugging Face rotate_half convention, positions 0..T-1."""
    T, Dh = x.shape[1], x.shape[3]
    half = Dh // 2
    inv = theta ** (-torch.arange(half, dtype=torch.float64) * 2.0 / Dh)
    ang = torch.arange(T, dtype=torch.float64)[:, None] * inv[None, :]
    cos = torch.cat([ang.cos(), ang.cos()], -1)[None, :, None, :].to(x.dtype)
    sin = torch.cat([ang.sin(), ang.sin()], -1)[None, :, None, :].to(x.dtype)
    rot = torch.cat([-x[..., half:], x[..., :half]], -1)
    return x * cos + rot * sin


def attention(x, W, p, cfg):
    B, T, d = x.shape
    H = cfg["num_attention_heads"]
    Dh = d // H
    q = rope((x @ W[p + "self_attn.q_proj.weight"].T).view(B, T, H, Dh), cfg["rope_theta"])
    k = rope((x @ W[p + "self_attn.k_proj.weight"].T).view(B, T, H, Dh), cfg["rope_theta"])
    v = (x @ W[p + "self_attn.v_proj.weight"].T).view(B, T, H, Dh)
    q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # (B, H, T, Dh)
    scores = (q @ k.transpose(-1, -2)) / math.sqrt(Dh)
    mask = torch.ones(T, T, dtype=torch.bool).tril()
    scores = scores.masked_fill(~mask, float("-inf"))
    o = (scores.softmax(-1) @ v).transpose(1, 2).reshape(B, T, d)
    return o @ W[p + "self_attn.o_proj.weight"].T


def swiglu(u, W, p):
    return (F.silu(u @ W[p + "gate_proj.weight"].T) * (u @ W[p + "up_proj.weight"].T)) @ W[p + "down_proj.weight"].T


def route(u, ids, W, p, x, cfg, disable_top1=False):
    """One router. Returns (idx (N, K) long with -1 = empty, weights (N, K), loss or None, report)."""
    E, K = cfg["num_experts"], cfg["num_experts_per_tok"]
    N = u.shape[0]
    kind = cfg["router_kind"]
    if kind == "hash":
        idx = W[p + "hash_table"][ids.long()].long()
        w = torch.full(idx.shape, 1.0 / K, dtype=u.dtype)
        counts = torch.bincount(idx.flatten(), minlength=E)
        return idx, w, None, {"counts": counts.tolist(), "aux": None}
    logits = u @ W[p + "wg" + x + ".weight"].T
    s = logits.softmax(-1)
    sd = s.detach()
    top1 = sd.argmax(-1)
    if kind == "topk":
        score = sd.clone()
        bias_name = p + "wg" + x + ".e_score_correction_bias"
        if bias_name in W:
            score = score + W[bias_name].to(score.dtype)
        if disable_top1:
            score[torch.arange(N), top1] = float("-inf")
        order = torch.sort(score, dim=-1, descending=True, stable=True).indices
        idx = order[:, :K]
        p_sel = s.gather(1, idx)
        if cfg["norm_topk_prob"]:
            w = p_sel / p_sel.sum(-1, keepdim=True).clamp_min(1e-9)
        else:
            w = p_sel
    else:  # top-p
        order = torch.sort(sd, dim=-1, descending=True, stable=True).indices
        start = 1 if disable_top1 else 0
        rows = []
        for n in range(N):
            keep, cum = [], 0.0
            for j in range(start, E):
                e = int(order[n, j])
                keep.append(e)
                cum += float(sd[n, e])
                if cum > cfg["top_p"]:
                    break
            rows.append(keep)
        Kn = max(len(r) for r in rows)
        idx = torch.full((N, Kn), -1, dtype=torch.long)
        for n, r in enumerate(rows):
            idx[n, :len(r)] = torch.tensor(r, dtype=torch.long)
        w = s.gather(1, idx.clamp_min(0)) * (idx >= 0)
    valid = idx[idx >= 0]
    counts = torch.bincount(valid, minlength=E)
    f = counts.to(u.dtype) / max(int(valid.numel()), 1)
    aux_value = float(E * (f * sd.mean(0)).sum())
    loss = None
    if cfg["router_aux_loss_coef"] > 0:
        loss = cfg["router_aux_loss_coef"] * E * (f * s.mean(0)).sum()
    if cfg["router_z_loss_coef"] > 0:
        z = cfg["router_z_loss_coef"] * torch.logsumexp(logits, -1).pow(2).mean()
        loss = z if loss is None else loss + z
    return idx, w, loss, {"counts": counts.tolist(), "aux": aux_value}


def moe_sublayer(u, ids, W, p, x, cfg, disable_top1):
    """M(u) for sub-layer suffix x ("" or "0"/"1"); u: (N, d)."""
    idx, w, loss, report = route(u, ids, W, p, x, cfg, disable_top1)
    E, (N, K) = cfg["num_experts"], idx.shape
    # Capacity (if any): pairs in token order, each kept while its expert has room.
    keep = idx >= 0
    cf = cfg.get("capacity_factor", 0.0)
    report["dropped"] = 0
    if cf > 0:
        cap = math.ceil(torch.tensor(cf, dtype=torch.float32).item() * N * K / E)
        used = [0] * E
        for q in range(N * K):
            n, j = divmod(q, K)
            e = int(idx[n, j])
            if e < 0:
                continue
            if used[e] < cap:
                used[e] += 1
            else:
                keep[n, j] = False
                report["dropped"] += 1
    routed = torch.zeros_like(u)
    for e in range(E):
        sel = (idx == e) & keep  # (N, K): at most one True per row (distinct experts)
        rows = sel.any(-1).nonzero().flatten()
        if rows.numel() == 0:
            continue
        we = (w * sel).sum(-1)[rows]
        y = swiglu(u[rows], W, p + "mlp" + x + f".{e}.")
        routed = routed.index_add(0, rows, we[:, None] * y)
    n_shared = cfg["num_shared_experts"]
    if n_shared == 0:
        return routed, loss, report
    if n_shared == 1:
        shared = swiglu(u, W, p + "res_mlp" + x + ".")
    else:
        shared = 0.5 * (swiglu(u, W, p + "res_mlp" + x + ".0.") + swiglu(u, W, p + "res_mlp" + x + ".1."))
    c = (u @ W[p + "coefficient" + x + ".weight"].T + W[p + "coefficient" + x + ".bias"]).softmax(-1)
    return c[:, :1] * routed + c[:, 1:] * shared, loss, report


def forward(W, cfg, ids, targets, disable_top1=False):
    """ids, targets: (B, T) integer tensors (targets < 0 ignored).
    Returns dict(loss, ce, aux, tokens, routers={cmoe router name: report})."""
    B, T = ids.shape
    eps = cfg["rms_norm_eps"]
    moe_layers = set(cfg.get("moe_layers", []))
    kind = cfg["moe_kind"]
    flat = ids.reshape(-1)
    x = W["model.embed_tokens.weight"][flat.long()].view(B, T, -1)
    aux = None
    routers = {}
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        h = x + attention(rmsnorm(x, W[p + "input_layernorm.weight"], eps), W, p, cfg)
        u = rmsnorm(h, W[p + "post_attention_layernorm.weight"], eps).view(B * T, -1)
        hf = h.view(B * T, -1)
        if l not in moe_layers:
            x = (hf + swiglu(u, W, p + "mlp.")).view(B, T, -1)
            continue
        subs = [("0", "moeA"), ("1", "moeB")] if kind == "cartesian" else [("", "moe")]
        for x_suffix, cname in subs:
            if x_suffix == "1":
                u = rmsnorm(hf, W[p + "mlp_layernorm.weight"], eps)
            y, loss, report = moe_sublayer(u, flat, W, p, x_suffix, cfg, disable_top1 and kind != "hash")
            hf = hf + y
            routers[f"layers.{l}.{cname}"] = report
            if loss is not None:
                aux = loss if aux is None else aux + loss
        x = hf.view(B, T, -1)
    hfin = rmsnorm(x, W["model.norm.weight"], eps).view(B * T, -1)
    logits = hfin @ W["lm_head.weight"].T
    t = targets.reshape(-1).long()
    valid = t >= 0
    ce = F.cross_entropy(logits[valid], t[valid], reduction="mean")
    loss = ce if aux is None else ce + aux
    return {"loss": loss, "ce": ce, "aux": aux, "tokens": int(valid.sum()), "routers": routers}


def trainable(tensors, dtype):
    """Float copies of the export's parameters that require grad; buffers stay as they are."""
    W = {}
    for name, t in tensors.items():
        if is_buffer(name):
            W[name] = t
        else:
            W[name] = t.to(dtype).detach().requires_grad_(True)
    return W
