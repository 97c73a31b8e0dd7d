"""Human-readable plan: grouped like NIM's list-model-profiles (compatible / low memory / incompatible)."""
from __future__ import annotations

from packager.planner.types import Plan, Profile

GiB = 2**30


def _fmt_params(n: int) -> str:
    return f"{n / 1e9:.1f}B" if n >= 1e9 else f"{n / 1e6:.1f}M"


def _row(i: int, p: Profile, selected: bool) -> str:
    e = p.estimates
    mark = "*" if selected else " "
    per_node = p.fill.tokens_per_s_per_node if p.fill else e.decode_tokens_per_s_full_batch
    repl = p.fill.replicas_per_node if p.fill else 1
    return (f" {mark}{i:<3d}{p.name:<44s}{p.candidate.devices:>4d}{repl:>5d}{e.weights_bytes_per_device / GiB:>10.2f}"
            f"{e.kv_cache_tokens:>12,d}{e.concurrent_sequences:>8d}{p.max_model_len:>8d}"
            f"{e.decode_tokens_per_s:>10.1f}{e.decode_tokens_per_s_full_batch:>11.1f}{per_node:>12.1f}")


HEADER = (f"  {'#':<3s}{'PROFILE':<44s}{'DEV':>4s}{'REPL':>5s}{'WGT GiB':>10s}{'KV TOKENS':>12s}{'FIT@CTX':>8s}"
          f"{'CTX':>8s}{'TOK/S@1':>10s}{'TOK/S@MAX':>11s}{'NODE TOK/S':>12s}")
LEGEND = ("  DEV devices per instance; REPL instances per node; FIT@CTX sequences of CTX tokens that fit in the KV "
          "cache (not --max-num-seqs); TOK/S@MAX one instance at full batch; NODE TOK/S all REPL instances together")


def render_plan(plan: Plan) -> str:
    req = plan.request
    m = req.model
    pools = ", ".join(f"{p.name}: {p.count} x {p.accelerator.key} x {p.nodes} node(s)" for p in req.hardware.pools)
    lines = [
        f"Model     {m.name} ({_fmt_params(m.parameters)} params, {m.family}{', MoE' if m.is_moe else ''}), "
        f"context {m.context_length if req.max_model_len is None else req.max_model_len}",
        f"Hardware  {req.hardware.name} ({pools})",
        f"Objective {req.objective}",
        "",
    ]
    sel = plan.selected
    if sel:
        lines.append(f"Selected  {sel.name}  ->  {sel.engine}")
        if plan.why:
            lines.append(f"  why: {plan.why}")
        lines.append("  " + " ".join(sel.engine_argv))
        for n in sel.notes:
            lines.append(f"  note: {n}")
        lines.append(f"  estimate basis: {sel.estimates.basis}")
        if m.adapters:
            names = ", ".join(f"{a.name} (r{a.rank})" for a in m.adapters)
            lines.append(f"  LoRA adapters: {names}; slots {sel.estimates.lora_bytes_per_device / GiB:.3f} GiB/device")
    else:
        lines.append("Selected  nothing fits")
        for a in plan.advice:
            lines.append(f"  advice: {a}")
    ok = [p for p in plan.candidates if not p.low_memory]
    low = [p for p in plan.candidates if p.low_memory]
    index = {p.name: i + 1 for i, p in enumerate(plan.candidates)}
    for title, group in (("Compatible profiles (ranked)", ok), ("Compatible with low memory (reduced context)", low)):
        if not group:
            continue
        lines += ["", f"{title}:", HEADER]
        lines += [_row(index[p.name], p, p is sel) for p in group]
    if plan.candidates:
        lines += ["", LEGEND]
    if plan.rejected:
        lines += ["", "Incompatible profiles:"]
        width = max(len(r.name) for r in plan.rejected)
        for r in plan.rejected:
            lines.append(f"  {r.name:<{width}s}  {r.reasons[0]}")
            lines += [f"  {'':<{width}s}  {x}" for x in r.reasons[1:]]
    return "\n".join(lines)
