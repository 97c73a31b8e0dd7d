#!/usr/bin/env python3
"""GPU check of the fallback runtime's kernels, and decode speed torch vs Triton.

One run on a lent GPU (no internet, no weights needed):

  1. every Triton kernel against the torch reference on the device, in bf16
     and fp16 (max abs / rel error, pass/fail at stated tolerances);
  2. per-op timings, torch vs Triton;
  3. the card's copy bandwidth (one large device copy: bytes read + written / s);
  4. a random-weight Llama-3.2-1B-shaped model (bf16, tied embeddings) decoding
     at batch 1 and 32 with the torch ops and with the Triton ops on the same
     weights and caches, eager and in a CUDA graph; achieved bytes/s (weights +
     KV read per step / step time) as a fraction of the copy bandwidth, and
     whether both op tables give the same logits.

Results go to $OUT/gpu_results.json when $OUT is set, else
bench/results/gpu_kernels_decode.json (``--out`` overrides). The JSON is
rewritten after every section, so a run cut short still leaves what it did.

``--smoke`` runs the same logic on the CPU with tiny shapes under the Triton
interpreter (fp32/fp16, no CUDA graphs) to test this script without a GPU.

  python bench/gpu/kernels_and_decode.py            # on the GPU machine
  python bench/gpu/kernels_and_decode.py --smoke    # CPU, ~10 s (timings meaningless)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class ModelShape:
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    eps: float = 1e-5
    theta: float = 500000.0
    max_pos: int = 131072


LLAMA_3_2_1B = ModelShape(2048, 16, 32, 8, 64, 8192, 128256)
TINY = ModelShape(64, 2, 4, 2, 16, 96, 256, max_pos=256)
# Logits of the torch and Triton op tables on one step: ||a - b|| / ||a||.
# bf16 rounding through 16 layers stays near 1e-2; a wrong kernel gives ~1.
CONSISTENCY_REL_L2 = 0.05
LLAMA3_SCALING = {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                  "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="CPU + TRITON_INTERPRET, tiny shapes")
    p.add_argument("--out", help="JSON path (default: $OUT/gpu_results.json or bench/results/...)")
    p.add_argument("--batches", default=None, help="comma list of decode batch sizes (default 1,32)")
    p.add_argument("--ctx", type=int, default=None, help="tokens already in each sequence's cache")
    p.add_argument("--iters", type=int, default=None, help="timed decode steps per configuration")
    p.add_argument("--budget-s", type=float, default=480.0,
                   help="skip remaining sections after this many seconds (keeps one device call short)")
    return p.parse_args(argv)


class Run:
    """Collects results and rewrites the JSON after every section."""

    def __init__(self, path: Path, budget_s: float):
        self.path = path
        self.t0 = time.perf_counter()
        self.budget_s = budget_s
        self.res: dict = {"errors": [], "skipped": []}

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def over_budget(self, section: str) -> bool:
        if self.elapsed() > self.budget_s:
            self.res["skipped"].append(f"{section}: time budget {self.budget_s:.0f}s spent")
            print(f"[skip] {section}: over budget", flush=True)
            return True
        return False

    def error(self, section: str, exc: BaseException) -> None:
        tb = traceback.format_exc(limit=6)
        self.res["errors"].append({"section": section, "error": repr(exc), "traceback": tb})
        print(f"[error] {section}: {exc!r}\n{tb}", flush=True)

    def save(self) -> None:
        self.res["elapsed_s"] = round(self.elapsed(), 2)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.res, indent=2, default=str))
        tmp.replace(self.path)


# ---------------------------------------------------------------------------
# timing
# ---------------------------------------------------------------------------


def make_timer(torch, device):
    """Seconds per call of fn(), averaged over iters, after warmup calls."""

    def timer(fn, iters: int, warmup: int = 3) -> float:
        for _ in range(warmup):
            fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(iters):
                fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1e3 / iters
        t = time.perf_counter()
        for _ in range(iters):
            fn()
        return (time.perf_counter() - t) / iters

    return timer


# ---------------------------------------------------------------------------
# 1. kernel checks
# ---------------------------------------------------------------------------


def tolerances(torch):
    # Both paths compute in fp32 and round once; differences are a few ulps of
    # the storage dtype (attention also rounds P to the dtype for the PV dot).
    return {
        torch.float32: (dict(atol=1e-5, rtol=1e-5), dict(atol=2e-5, rtol=2e-5)),
        torch.float16: (dict(atol=2e-3, rtol=2e-3), dict(atol=4e-3, rtol=4e-3)),
        torch.bfloat16: (dict(atol=2e-2, rtol=2e-2), dict(atol=3e-2, rtol=3e-2)),
    }


def compare(torch, got, want, tol) -> dict:
    g, w = got.float(), want.float()
    diff = (g - w).abs()
    finite = bool(torch.isfinite(g).all())
    max_abs = float(diff.max()) if diff.numel() else 0.0
    ref_max = float(w.abs().max()) if w.numel() else 0.0
    max_rel = float((diff / (w.abs() + tol["atol"])).max()) if diff.numel() else 0.0
    ok = finite and bool(torch.allclose(g, w, **tol))
    return {"max_abs": max_abs, "max_rel": max_rel, "max_abs_over_ref_max": max_abs / max(ref_max, 1e-12),
            "finite": finite, "ok": ok}


def kernel_cases(smoke: bool):
    if smoke:
        return {
            "rms_norm": [(1, 64), (5, 576)],
            "silu_and_mul": [(1, 2 * 96), (3, 2 * 1100)],
            "rotary": [(3, 4, 2, 16), (2, 6, 2, 80)],
            "decode_attention": [(1, 4, 4, 64, [1], 40), (3, 6, 2, 80, [1, 17, 70], 80),
                                 (2, 8, 2, 96, [65, 3], 80)],
        }
    return {
        "rms_norm": [(1, 2048), (37, 2048), (5, 576), (64, 4096), (3, 8192)],
        "silu_and_mul": [(1, 2 * 8192), (37, 2 * 8192), (5, 2 * 1536), (32, 2 * 14336)],
        "rotary": [(1, 32, 8, 64), (37, 32, 8, 64), (5, 9, 3, 64), (7, 8, 2, 80), (7, 12, 4, 96),
                   (3, 32, 8, 128)],
        # (B, Hq, Hkv, D, seq_lens, cache max_len)
        "decode_attention": [
            (1, 32, 8, 64, [1], 1024), (1, 32, 8, 64, [1000], 1024), (3, 9, 3, 64, [1, 77, 513], 1024),
            (5, 8, 2, 80, [1, 33, 130, 65, 7], 256), (5, 12, 4, 96, [200, 1, 64, 129, 255], 256),
            (32, 32, 8, 64, "rand", 1024), (32, 32, 8, 128, "rand", 2048), (8, 32, 8, 64, [4096] * 8, 4096),
        ],
    }


def check_kernels(run: Run, torch, T, Rf, rope_tables, device, dtypes, smoke: bool) -> None:
    tol_tab = tolerances(torch)
    cases = kernel_cases(smoke)
    out = run.res.setdefault("kernel_checks", [])
    gen = torch.Generator(device="cpu").manual_seed(0)

    def rnd(*shape, dtype, scale=1.0):
        return (torch.randn(*shape, generator=gen) * scale).to(device=device, dtype=dtype)

    def record(op, dtype, shape, res):
        res.update({"op": op, "dtype": str(dtype).replace("torch.", ""), "shape": shape})
        out.append(res)
        flag = "ok  " if res["ok"] else "FAIL"
        print(f"[check] {flag} {op:17s} {res['dtype']:8s} {str(shape):40s} "
              f"max_abs={res['max_abs']:.3g} max_rel={res['max_rel']:.3g}", flush=True)

    for dtype in dtypes:
        tol, atol_attn = tol_tab[dtype]
        for t, h in cases["rms_norm"]:
            x, r = rnd(t, h, dtype=dtype), rnd(t, h, dtype=dtype)
            w = (1 + 0.1 * torch.randn(h, generator=gen)).to(device=device, dtype=dtype)
            for res_in in (None, r):
                y, hh = T.rms_norm(x, w, 1e-5, res_in)
                y0, h0 = Rf.rms_norm(x, w, 1e-5, res_in)
                c = compare(torch, y, y0, tol)
                c["h_exact"] = bool(torch.equal(hh, h0))
                c["ok"] = c["ok"] and c["h_exact"]
                record("rms_norm" + ("+res" if res_in is not None else ""), dtype, [t, h], c)
        for t, two_i in cases["silu_and_mul"]:
            x = rnd(t, two_i, dtype=dtype, scale=2.0)
            record("silu_and_mul", dtype, [t, two_i], compare(torch, T.silu_and_mul(x), Rf.silu_and_mul(x), tol))
        for t, hq, hkv, d in cases["rotary"]:
            max_pos = 4096 if not smoke else 128
            cos, sin = rope_tables(d, max_pos, 500000.0, LLAMA3_SCALING if d == 64 else None, device=device)
            q, k = rnd(t, hq, d, dtype=dtype), rnd(t, hkv, d, dtype=dtype)
            pos = torch.randint(0, max_pos, (t,), generator=gen).to(device)
            (q1, k1), (q0, k0) = T.rotary(q, k, pos, cos, sin), Rf.rotary(q, k, pos, cos, sin)
            cq, ck = compare(torch, q1, q0, tol), compare(torch, k1, k0, tol)
            cq["k"] = ck
            cq["ok"] = cq["ok"] and ck["ok"]
            record("rotary", dtype, [t, hq, hkv, d], cq)
        for b, hq, hkv, d, lens, max_len in cases["decode_attention"]:
            if lens == "rand":
                lens_t = torch.randint(1, max_len + 1, (b,), generator=gen)
            else:
                lens_t = torch.tensor(lens)
            slots = b + 3
            cap = _pad16(max_len)
            kc = rnd(slots, hkv, cap, d, dtype=dtype)
            vc = rnd(slots, hkv, cap, d, dtype=dtype)
            slot_ids = torch.randperm(slots, generator=gen)[:b]
            for i in range(b):  # rows past each length: finite garbage (the runtime zeros blocks it hands
                vc[int(slot_ids[i]), :, int(lens_t[i]):] = -3e4  # out, so no NaN), must not leak into the output
            kc, vc = to_pages(kc), to_pages(vc)
            q = rnd(b, hq, d, dtype=dtype)
            bt, lens_d = tables_for(torch, slot_ids.to(device), cap), lens_t.to(device)
            mx = int(lens_t.max())
            want = Rf.decode_attention(q, kc, vc, bt, lens_d, d ** -0.5, mx)
            for label, kw in (("auto", {"max_seq_len": mx}), ("no-bound", {}), ("1-split", {"num_splits": 1})):
                got = T.decode_attention(q, kc, vc, bt, lens_d, d ** -0.5, **kw)
                c = compare(torch, got, want, atol_attn)
                c["variant"] = label
                record(f"decode_attn[{label}]", dtype, [b, hq, hkv, d, mx, max_len], c)
        run.save()
    checks = run.res["kernel_checks"]
    run.res["kernel_checks_ok"] = all(c["ok"] for c in checks) and len(checks) > 0


PAGE = 16  # KV block size of the paged cache the kernels read


def to_pages(c):
    """[S, Hkv, L, D] per sequence slot -> paged [S * L / PAGE, PAGE, Hkv, D]:
    slot s owns the consecutive blocks s * L / PAGE onwards."""
    s_, h, length, d = c.shape
    return c.permute(0, 2, 1, 3).contiguous().view(s_ * length // PAGE, PAGE, h, d)


def tables_for(torch, slot_ids, length):
    nb = length // PAGE
    return (slot_ids[:, None] * nb + torch.arange(nb, device=slot_ids.device)).contiguous()


def _pad16(n: int) -> int:
    return -(-n // PAGE) * PAGE


# ---------------------------------------------------------------------------
# 2. per-op timings
# ---------------------------------------------------------------------------


def time_kernels(run: Run, torch, T, Rf, rope_tables, device, dtype, timer, smoke: bool) -> None:
    it = 3 if smoke else 200
    s = TINY if smoke else LLAMA_3_2_1B
    b = 3 if smoke else 32
    ctx = 20 if smoke else 1024
    gen = torch.Generator(device="cpu").manual_seed(1)

    def rnd(*shape):
        return torch.randn(*shape, generator=gen).to(device=device, dtype=dtype)

    x, r, w = rnd(b, s.hidden), rnd(b, s.hidden), rnd(s.hidden)
    gu = rnd(b, 2 * s.intermediate)
    q, k = rnd(b, s.heads, s.head_dim), rnd(b, s.kv_heads, s.head_dim)
    cos, sin = rope_tables(s.head_dim, 4096 if not smoke else 64, s.theta, device=device)
    pos = torch.full((b,), 7, device=device, dtype=torch.int64)
    slots = b
    kc = to_pages(rnd(slots, s.kv_heads, _pad16(ctx), s.head_dim))
    vc = to_pages(rnd(slots, s.kv_heads, _pad16(ctx), s.head_dim))
    slot_ids = tables_for(torch, torch.arange(b, device=device), _pad16(ctx))  # block tables
    lens = torch.full((b,), ctx, device=device, dtype=torch.int64)
    qa = rnd(b, s.heads, s.head_dim)
    b1 = (qa[:1], slot_ids[:1], lens[:1])
    ops = {
        "rms_norm+res": lambda M: M.rms_norm(x, w, 1e-5, r),
        "silu_and_mul": lambda M: M.silu_and_mul(gu),
        "rotary": lambda M: M.rotary(q, k, pos, cos, sin),
        f"decode_attn_b{b}": lambda M: M.decode_attention(qa, kc, vc, slot_ids, lens, 0.125, ctx),
        "decode_attn_b1": lambda M: M.decode_attention(b1[0], kc, vc, b1[1], b1[2], 0.125, ctx),
    }
    rows = run.res.setdefault("kernel_times", [])
    for name, fn in ops.items():
        t_torch = timer(lambda: fn(Rf), it)
        t_tri = timer(lambda: fn(T), it)
        row = {"op": name, "dtype": str(dtype).replace("torch.", ""), "batch": b, "ctx": ctx,
               "torch_us": t_torch * 1e6, "triton_us": t_tri * 1e6, "speedup": t_torch / t_tri}
        rows.append(row)
        print(f"[time] {name:18s} torch {row['torch_us']:9.1f} us  triton {row['triton_us']:9.1f} us  "
              f"x{row['speedup']:.2f}", flush=True)
    run.save()


# ---------------------------------------------------------------------------
# 3. copy bandwidth
# ---------------------------------------------------------------------------


def copy_bandwidth(run: Run, torch, device, timer, smoke: bool) -> float:
    n = (8 << 20) if smoke else (2 << 30)  # 2 GiB: far past any cache
    src = torch.empty(n, dtype=torch.uint8, device=device).fill_(1)
    dst = torch.empty_like(src)
    sec = timer(lambda: dst.copy_(src), 3 if smoke else 20, warmup=2)
    bw = 2 * n / sec  # read + write
    run.res["copy_bandwidth"] = {"bytes": n, "seconds_per_copy": sec, "bytes_per_s": bw,
                                 "note": "one device tensor copy; bytes read + written per second"}
    print(f"[bw] copy bandwidth {bw / 1e9:.1f} GB/s", flush=True)
    del src, dst
    run.save()
    return bw


# ---------------------------------------------------------------------------
# 4. random-weight Llama decode
# ---------------------------------------------------------------------------


class Model:
    """Llama weights in the fused layout a serving engine uses: one qkv and one
    gate_up matrix per layer, lm_head tied to the embedding."""

    def __init__(self, torch, s: ModelShape, dtype, device, rope_tables, seed: int = 0):
        g = torch.Generator(device=device).manual_seed(seed)

        def w(*shape, std=0.02):
            return (torch.randn(*shape, generator=g, device=device, dtype=torch.float32) * std).to(dtype)

        def norm_w():
            return (1 + 0.1 * torch.randn(s.hidden, generator=g, device=device)).to(dtype)

        qkv_out = (s.heads + 2 * s.kv_heads) * s.head_dim
        self.s = s
        self.embed = w(s.vocab, s.hidden)
        self.layers = [
            {"ln1": norm_w(), "wqkv": w(qkv_out, s.hidden), "wo": w(s.hidden, s.heads * s.head_dim),
             "ln2": norm_w(), "wgu": w(2 * s.intermediate, s.hidden), "wdown": w(s.hidden, s.intermediate)}
            for _ in range(s.layers)
        ]
        self.final_ln = norm_w()
        self.cos, self.sin = rope_tables(s.head_dim, s.max_pos, s.theta, LLAMA3_SCALING, device=device)
        tensors = [self.embed, self.final_ln] + [t for L in self.layers for t in L.values()]
        self.weight_bytes = sum(t.numel() * t.element_size() for t in tensors)
        self.params = sum(t.numel() for t in tensors)


def decode_step(torch, F, ops, m: Model, caches, tokens, positions, slot_ids, seq_lens, max_seq_len):
    """One decode token for every sequence in the batch -> logits [B, vocab].
    ``caches``: paged per layer; slot s owns consecutive blocks (to_pages)."""
    s = m.s
    b = tokens.shape[0]
    nq, nkv = s.heads * s.head_dim, s.kv_heads * s.head_dim
    scale = s.head_dim ** -0.5
    x = m.embed[tokens]
    res = None
    for L, (kc, vc) in zip(m.layers, caches):
        y, res = ops.rms_norm(x, L["ln1"], s.eps, res)
        qkv = F.linear(y, L["wqkv"])
        q = qkv[:, :nq].view(b, s.heads, s.head_dim)
        k = qkv[:, nq:nq + nkv].view(b, s.kv_heads, s.head_dim)
        v = qkv[:, nq + nkv:].view(b, s.kv_heads, s.head_dim)
        q, k = ops.rotary(q, k, positions, m.cos, m.sin)
        per_slot = kc.shape[0] // m.slots * PAGE
        flat = slot_ids * per_slot + positions  # [B] cache positions
        kc.view(-1, s.kv_heads, s.head_dim)[flat] = k
        vc.view(-1, s.kv_heads, s.head_dim)[flat] = v
        a = ops.decode_attention(q, kc, vc, m.tables(slot_ids), seq_lens, scale, max_seq_len)
        x = F.linear(a.reshape(b, nq), L["wo"])
        y, res = ops.rms_norm(x, L["ln2"], s.eps, res)
        x = F.linear(ops.silu_and_mul(F.linear(y, L["wgu"])), L["wdown"])
    y, _ = ops.rms_norm(x, m.final_ln, s.eps, res)
    return F.linear(y, m.embed)


def decode_bench(run: Run, torch, F, T, Rf, rope_tables, device, dtype, timer, copy_bw, args) -> None:
    smoke = args.smoke
    s = TINY if smoke else LLAMA_3_2_1B
    batches = [int(v) for v in (args.batches or ("1,3" if smoke else "1,32")).split(",")]
    ctx = args.ctx or (20 if smoke else 512)
    iters = args.iters or (2 if smoke else 30)
    max_len = _pad16(max(ctx + 64, 64))
    slots = max(batches)
    m = Model(torch, s, dtype, device, rope_tables)
    m.slots = slots
    m.tables = lambda ids: tables_for(torch, ids, max_len)
    g = torch.Generator(device=device).manual_seed(5)
    caches = [
        (to_pages(torch.randn(slots, s.kv_heads, max_len, s.head_dim, generator=g, device=device).to(dtype)),
         to_pages(torch.randn(slots, s.kv_heads, max_len, s.head_dim, generator=g, device=device).to(dtype)))
        for _ in range(s.layers)
    ]
    elem = torch.tensor([], dtype=dtype).element_size()
    run.res["decode_model"] = {"shape": asdict(s), "dtype": str(dtype).replace("torch.", ""),
                               "params": m.params, "weight_bytes": m.weight_bytes, "ctx": ctx,
                               "cache_max_len": max_len, "iters": iters}
    rows = run.res.setdefault("decode", [])
    consistency = run.res.setdefault("decode_consistency", [])
    print(f"[model] {m.params / 1e9:.3f} B params, {m.weight_bytes / 1e9:.2f} GB weights, ctx {ctx}", flush=True)
    for b in batches:
        if run.over_budget(f"decode b={b}"):
            break
        tokens = torch.randint(0, s.vocab, (b,), generator=g, device=device)
        slot_ids = torch.randperm(slots, generator=g, device=device)[:b]
        seq_lens = torch.full((b,), ctx, dtype=torch.int64, device=device)
        positions = seq_lens - 1
        kv_bytes = b * s.layers * 2 * s.kv_heads * ctx * s.head_dim * elem
        step_bytes = m.weight_bytes + kv_bytes

        def step(ops):
            return decode_step(torch, F, ops, m, caches, tokens, positions, slot_ids, seq_lens, ctx)

        # Same weights, same cache contents: both op tables must agree.
        try:
            with torch.no_grad():
                l_torch, l_tri = step(Rf).float(), step(T).float()
            # Random weights give near-ties in 128k logits, so argmax agreement
            # is informative only; the pass criterion is the relative L2 error.
            agree = float((l_torch.argmax(-1) == l_tri.argmax(-1)).float().mean())
            diff = float((l_torch - l_tri).abs().max())
            rel_l2 = float((l_torch - l_tri).norm() / l_torch.norm().clamp_min(1e-30))
            consistency.append({"batch": b, "argmax_agreement": agree, "max_abs_logit_diff": diff,
                                "max_abs_logit": float(l_torch.abs().max()), "rel_l2": rel_l2,
                                "finite": bool(torch.isfinite(l_tri).all()),
                                "ok": bool(torch.isfinite(l_tri).all()) and rel_l2 < CONSISTENCY_REL_L2})
            print(f"[consistency] b={b} rel_l2 {rel_l2:.3g}  argmax agree {agree:.3f}  max|dlogit| {diff:.3g}",
                  flush=True)
        except Exception as e:  # noqa: BLE001 - record and go on to timings
            run.error(f"consistency b={b}", e)

        for name, ops in (("torch", Rf), ("triton", T)):
            modes = ["eager"] + (["cuda_graph"] if device.type == "cuda" else [])
            for mode in modes:
                if run.over_budget(f"decode b={b} {name} {mode}"):
                    break
                try:
                    with torch.no_grad():
                        if mode == "eager":
                            sec = timer(lambda: step(ops), iters, warmup=2)
                        else:
                            sec = graph_time(torch, lambda: step(ops), iters, timer)
                except Exception as e:  # noqa: BLE001
                    run.error(f"decode b={b} {name} {mode}", e)
                    continue
                row = {"batch": b, "ops": name, "mode": mode, "ctx": ctx, "step_ms": sec * 1e3,
                       "tokens_per_s": b / sec, "bytes_per_step": step_bytes, "kv_bytes_per_step": kv_bytes,
                       "bytes_per_s": step_bytes / sec,
                       "fraction_of_copy_bw": (step_bytes / sec) / copy_bw if copy_bw else None}
                rows.append(row)
                print(f"[decode] b={b:3d} {name:6s} {mode:10s} {row['step_ms']:8.3f} ms/step "
                      f"{row['tokens_per_s']:9.1f} tok/s  {row['bytes_per_s'] / 1e9:8.1f} GB/s "
                      f"= {row['fraction_of_copy_bw'] or 0:.3f} of copy bw", flush=True)
                run.save()
        # Ratios triton/torch for each mode, measured in this same process.
        for mode in ("eager", "cuda_graph"):
            pair = {r["ops"]: r for r in rows if r["batch"] == b and r["mode"] == mode}
            if len(pair) == 2:
                run.res.setdefault("decode_speedup_triton_over_torch", {})[f"b{b}_{mode}"] = (
                    pair["torch"]["step_ms"] / pair["triton"]["step_ms"])
        run.save()
    del caches, m


def graph_time(torch, fn, iters: int, timer) -> float:
    """Capture one decode step in a CUDA graph and time its replays: takes the
    Python and launch overhead out, leaving what the kernels cost."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(2):  # warm-up on a side stream, as capture requires
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    sec = timer(graph.replay, iters, warmup=2)
    del graph
    return sec


# ---------------------------------------------------------------------------


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.smoke:
        # Must precede the first triton import: kernels are decorated at import.
        os.environ["TRITON_INTERPRET"] = "1"
    sys.path.insert(0, str(ROOT))
    import torch
    import torch.nn.functional as F

    if args.out:
        path = Path(args.out)
    elif os.environ.get("OUT"):
        path = Path(os.environ["OUT"]) / "gpu_results.json"
    else:
        name = "gpu_kernels_decode_smoke.json" if args.smoke else "gpu_kernels_decode.json"
        path = ROOT / "bench" / "results" / name
    run = Run(path, args.budget_s)

    if args.smoke:
        device = torch.device("cpu")
        dtypes = [torch.float32, torch.float16]  # the interpreter has no bf16 math
        model_dtype = torch.float32
    else:
        if not torch.cuda.is_available():
            print("no CUDA/ROCm device; use --smoke on a CPU", file=sys.stderr)
            return 2
        device = torch.device("cuda")
        dtypes = [torch.bfloat16, torch.float16]
        model_dtype = torch.bfloat16

    from runtimes.fallback.kernels import rope_tables, select_ops, torch_ops

    T = select_ops("cpu" if args.smoke else "cuda", "triton")
    Rf = torch_ops()
    import triton

    meta = {"smoke": args.smoke, "python": platform.python_version(), "torch": torch.__version__,
            "triton": triton.__version__, "device": str(device), "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        meta.update({"gpu": p.name, "sms": p.multi_processor_count, "gpu_memory_gib": p.total_memory / 2**30,
                     "cuda": torch.version.cuda, "hip": getattr(torch.version, "hip", None)})
        meta["auto_ops"] = select_ops("cuda", "auto").name
    run.res["meta"] = meta
    print("[meta]", json.dumps(meta), flush=True)
    timer = make_timer(torch, device)

    sections = [
        ("kernel_checks", lambda: check_kernels(run, torch, T, Rf, rope_tables, device, dtypes, args.smoke)),
        ("kernel_times", lambda: time_kernels(run, torch, T, Rf, rope_tables, device, model_dtype, timer,
                                              args.smoke)),
        ("copy_bandwidth", lambda: copy_bandwidth(run, torch, device, timer, args.smoke)),
    ]
    for name, fn in sections:
        if run.over_budget(name):
            continue
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - keep going; the JSON says what failed
            run.error(name, e)
        run.save()
    copy_bw = (run.res.get("copy_bandwidth") or {}).get("bytes_per_s")
    if not run.over_budget("decode"):
        try:
            decode_bench(run, torch, F, T, Rf, rope_tables, device, model_dtype, timer, copy_bw, args)
        except Exception as e:  # noqa: BLE001
            run.error("decode", e)
    if device.type == "cuda":
        run.res["meta"]["max_memory_allocated_gib"] = torch.cuda.max_memory_allocated() / 2**30
    cons = run.res.get("decode_consistency", [])
    run.res["ok"] = (bool(run.res.get("kernel_checks_ok")) and not run.res["errors"]
                     and all(c["ok"] for c in cons) and bool(cons) and bool(run.res.get("decode")))
    run.save()
    print(f"[done] ok={run.res['ok']} errors={len(run.res['errors'])} in {run.elapsed():.1f}s -> {path}",
          flush=True)
    return 0 if run.res["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
