"""When nothing fits: say what would (more devices, a quantized variant, a shorter context)."""
from __future__ import annotations

import math

from packager.facts import ModelFacts
from packager.planner.candidates import VARIANT_PRECISION
from packager.planner.estimates import GiB, weight_bytes
from packager.planner.rules import rules
from packager.planner.types import PlanRequest, Rejection
from packager.vllm.defaults import vllm_defaults


def advise(req: PlanRequest, rejected: list[Rejection]) -> list[str]:
    model = req.model
    out: list[str] = []
    memory_rejected = [r for r in rejected if r.candidate and any("exceed" in x for x in r.reasons)]
    for pool in req.hardware.pools:
        acc = pool.accelerator
        util = vllm_defaults().gpu_memory_utilization if acc.is_gpu else rules()["cpu"]["memory_utilization"]
        usable = util * ((acc.engine_memory_gib if acc.is_gpu else None) or pool.device_memory_gib) * GiB
        options = [p for p in _precisions(model, acc.is_gpu) if _runs_on(model, pool, p)] or _precisions(model, acc.is_gpu)
        if acc.is_gpu:  # the preferred precision, and the smallest footprint the manifest allows
            options = list(dict.fromkeys([options[0], min(options, key=lambda p: weight_bytes(model, p))]))
        for precision in options:
            label = _label(model, precision)
            w = weight_bytes(model, precision) * 1.15  # room for activations and a little KV
            if not acc.is_gpu:
                if w > usable:
                    out.append(f"{label} weights are {weight_bytes(model, precision) / GiB:.1f} GiB: a CPU node needs at least "
                               f"{w / util / GiB:.0f} GiB of memory (this pool has {pool.memory_gib:g} GiB), or serve it on GPUs")
                break
            need = math.ceil(w / usable) if usable else 0
            if need > pool.count * pool.nodes:
                tp = 1 << (need - 1).bit_length()
                if tp <= 8:
                    out.append(f"{label} weights are {weight_bytes(model, precision) / GiB:.1f} GiB: use a node with "
                               f"at least {tp} x {acc.key} (tp={tp})")
                else:
                    nodes = math.ceil(tp / 8)
                    out.append(f"{label} weights are {weight_bytes(model, precision) / GiB:.1f} GiB: use {nodes} nodes "
                               f"of 8 x {acc.key} (tp=8 pp={nodes})")
        if acc.is_gpu and not any(v for v in model.variants) and "fp8" not in model.precisions:
            w8 = weight_bytes(model, "fp8") / GiB
            w4 = weight_bytes(model, "awq-int4") / GiB
            out.append(f"a quantized variant would shrink the weights: fp8 {w8:.1f} GiB, AWQ int4 {w4:.1f} GiB "
                       "(add `fp8` to serving.precisions or list a variant under serving.quantized_variants)")
    shorter = [r for r in memory_rejected if r.candidate and r.candidate.runtime == "vllm"] or memory_rejected
    for r in shorter[:1]:
        fit = [x for x in r.reasons if "longest context that fits" in x]
        if fit:
            out.append(f"{r.name}: {fit[0]}; set serving.context_length to that or less")
    if any("compute capability" in x for r in rejected for x in r.reasons) and "fp16" not in model.precisions:
        out.append("this GPU lacks bf16/fp8 support: allow fp16 in serving.precisions")
    if not out:
        out.append("no profile fits this hardware; see the rejection reasons above")
    return list(dict.fromkeys(out))


def _precisions(model: ModelFacts, gpu: bool) -> list[str]:
    if not gpu:
        return ["fp32"]
    order = [p for p in model.precisions if p != "fp32"] or ["bf16"]
    return order + [VARIANT_PRECISION[v.method] for v in model.variants]


def _runs_on(model: ModelFacts, pool, precision: str) -> bool:
    """Whether vLLM could compute in this precision on this device at all (memory aside)."""
    from packager.planner.constraints import precision_reasons
    from packager.planner.types import Candidate

    if not pool.accelerator.is_gpu:
        return True
    variant = next((v for v in model.variants if VARIANT_PRECISION[v.method] == precision), None)
    return not precision_reasons(model, Candidate("vllm", precision, "auto", 1, 1, "throughput", pool, variant))


def _label(model: ModelFacts, precision: str) -> str:
    variant = next((v for v in model.variants if VARIANT_PRECISION[v.method] == precision), None)
    return f"{precision} (variant {variant.name})" if variant else precision
