"""Order compatible profiles and say, in one sentence, why the first one won.

The rule: vLLM before the fallback where both serve, the objective's own profiles, full context
before a low-memory cut; then the manifest's precision order is honoured first (a lower precision
or a quantized variant wins only when nothing preferred fits), and only then the objective decides
(throughput: ample KV room on the fewest devices; latency: the largest tp that still buys >= 10 %
batch-1 speed). `cost` is the one objective that puts device count first, whatever the precision.
"""
from __future__ import annotations

from packager.planner.rules import rules
from packager.planner.types import Profile

RUNTIME_ORDER = {"vllm": 0, "triton": 1, "cpu": 2}
OBJECTIVES = ("throughput", "latency", "cost")
PROFILE_OBJECTIVE = {"throughput": "throughput", "latency": "latency", "cost": "throughput"}  # cost serves like throughput


def _useful_tp(profiles: list[Profile]) -> set[str]:
    """Per runtime/precision/kv group: a larger tp is useful while it buys >= 10% more batch-1 speed."""
    groups: dict[tuple, list[Profile]] = {}
    for p in profiles:
        c = p.candidate
        groups.setdefault((c.runtime, c.precision, c.kv_cache_dtype, c.objective, c.pool.name), []).append(p)
    useful = set()
    for members in groups.values():
        best = 0.0
        for p in sorted(members, key=lambda p: p.candidate.devices):
            if p.estimates.decode_tokens_per_s >= 1.1 * best:
                useful.add(p.name)
                best = p.estimates.decode_tokens_per_s
    return useful


def precision_rank(p: Profile, precisions: tuple[str, ...]) -> int:
    """Position in the manifest's precision list; quantized variants it does not list come after all of them."""
    prec = p.candidate.precision
    return precisions.index(prec) if prec in precisions else len(precisions)


def _ample(p: Profile) -> bool:
    return p.estimates.concurrent_sequences >= min(rules()["ample_sequences"], p.max_num_seqs)


def rank(profiles: list[Profile], objective: str, precisions: tuple[str, ...]) -> list[Profile]:
    useful = _useful_tp(profiles)
    want = PROFILE_OBJECTIVE.get(objective, objective)

    def key(p: Profile):
        c, e = p.candidate, p.estimates
        head = (RUNTIME_ORDER[c.runtime], c.objective != want, p.low_memory)
        prec = (precision_rank(p, precisions), c.kv_cache_dtype != "auto")
        if objective == "cost":
            return head + (c.devices, not _ample(p)) + prec + (-e.decode_tokens_per_s_full_batch, p.name)
        if objective == "latency":
            return head + prec + (p.name not in useful, -c.devices, -e.decode_tokens_per_s, p.name)
        return head + prec + (not _ample(p), c.devices, -e.decode_tokens_per_s_full_batch, p.name)

    return sorted(profiles, key=key)


def explain(ranked: list[Profile], objective: str, precisions: tuple[str, ...]) -> str:
    """One sentence: why the first profile won over the rest."""
    if not ranked:
        return ""
    w = ranked[0]
    c = w.candidate
    devices = f"{c.devices} device{'s' if c.devices > 1 else ''}"
    prec = c.precision + (" with an fp8 KV cache" if c.kv_cache_dtype == "fp8" else "")
    clauses = []
    if c.runtime != "vllm":
        clauses.append("no vLLM profile can run here, so the fallback runtime serves")
    if w.low_memory:
        clauses.append("nothing fits the wanted context at default settings, so this low-memory profile "
                       f"serves {w.max_model_len} tokens with --max-num-seqs {w.max_num_seqs}")
    preferred = [p for p in precisions if p != c.precision][: max(0, precision_rank(w, precisions))]
    if objective == "cost":
        clauses.append(f"it uses the fewest devices ({devices}) of every profile that fits, at {prec}")
    else:
        why_prec = (f"{prec} is the manifest's most preferred precision that fits" if not preferred else
                    f"{prec} is chosen because no {', '.join(preferred)} profile can run on this hardware")
        if objective == "latency":
            clauses.append(f"{why_prec}, and tp={c.tp} is the largest tensor-parallel size that still buys >= 10 % "
                           f"batch-1 speed ({w.estimates.decode_tokens_per_s:g} tokens/s)")
        else:
            n = w.estimates.concurrent_sequences
            room = f"room for {n} sequence{'s' if n != 1 else ''} of {w.max_model_len} tokens"
            if not _ample(w):
                room += (f" (no {c.precision} profile here has room for {rules()['ample_sequences']}, what the planner "
                         "calls ample: rules.yaml ample_sequences)")
            clauses.append(f"{why_prec}, with {room} on the fewest devices ({devices})")
    return f"{w.name} won: " + "; ".join(clauses) + "."
