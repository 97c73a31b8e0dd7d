"""Order compatible profiles: runtime preference, then the objective's own criterion."""
from __future__ import annotations

from packager.planner.rules import rules
from packager.planner.types import Profile

RUNTIME_ORDER = {"vllm": 0, "triton": 1, "cpu": 2}


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


def rank(profiles: list[Profile], objective: str, precisions: tuple[str, ...]) -> list[Profile]:
    ample = rules()["ample_sequences"]
    useful = _useful_tp(profiles)

    def precision_rank(p: Profile) -> int:
        prec = p.candidate.precision
        return precisions.index(prec) if prec in precisions else len(precisions)

    def key(p: Profile):
        c, e = p.candidate, p.estimates
        head = (RUNTIME_ORDER[c.runtime], c.objective != objective, p.low_memory)
        if objective == "latency":
            return head + (p.name not in useful, precision_rank(p), c.kv_cache_dtype != "auto", -c.devices,
                           -e.decode_tokens_per_s, p.name)
        return head + (e.concurrent_sequences < min(ample, p.max_num_seqs), c.devices, precision_rank(p),
                       c.kv_cache_dtype != "auto", -e.decode_tokens_per_s_full_batch, p.name)

    return sorted(profiles, key=key)
