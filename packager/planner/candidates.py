"""Enumerate candidate profiles: runtime x precision x KV dtype x tp x pp x objective, per pool."""
from __future__ import annotations

from packager.facts import Hardware, ModelFacts, Pool
from packager.planner.types import Candidate

OBJECTIVES = ("throughput", "latency")
VARIANT_PRECISION = {"awq": "awq-int4", "gptq": "gptq-int4", "fp8": "fp8"}


def runtimes_for(pool: Pool) -> list[str]:
    """Every runtime worth considering on this vendor; constraints then say which can really serve."""
    return ["cpu"] if not pool.accelerator.is_gpu else ["vllm", "triton"]


def parallel_layouts(pool: Pool, runtime: str) -> list[tuple[int, int]]:
    """(tp, pp): powers of two within one node, then one pipeline stage per node across nodes."""
    if runtime != "vllm":
        return [(1, 1)]  # the fallback runtime serves from one device
    tps = [t for t in (1, 2, 4, 8, 16, 32, 64) if t <= pool.count]
    if pool.count not in tps:
        tps.append(pool.count)
    layouts = [(t, 1) for t in tps]
    if pool.nodes > 1:
        layouts.append((pool.count, pool.nodes))
    return layouts


def precisions_for(model: ModelFacts, runtime: str) -> list[tuple[str, object]]:
    out: list[tuple[str, object]] = []
    variant_methods = {v.method for v in model.variants}
    for p in model.precisions:
        if p == "fp8" and "fp8" in variant_methods:
            continue  # a calibrated fp8 checkpoint beats on-the-fly fp8
        out.append((p, None))
    if runtime == "vllm":
        out += [(VARIANT_PRECISION[v.method], v) for v in model.variants]
    return out


def enumerate_candidates(model: ModelFacts, hardware: Hardware) -> list[Candidate]:
    several = len(hardware.pools) > 1
    out = []
    for pool in hardware.pools:
        for runtime in runtimes_for(pool):
            kv_dtypes = ("auto", "fp8") if runtime == "vllm" else ("auto",)
            for precision, variant in precisions_for(model, runtime):
                for kv in kv_dtypes:
                    for tp, pp in parallel_layouts(pool, runtime):
                        for objective in OBJECTIVES:
                            out.append(Candidate(runtime, precision, kv, tp, pp, objective, pool, variant, several))
    return out
