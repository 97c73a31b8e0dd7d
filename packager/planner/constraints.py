"""Hard constraints: why a candidate cannot run, in words with the numbers."""
from __future__ import annotations

from packager.facts import ModelFacts
from packager.planner.rules import rules
from packager.planner.types import Candidate
from packager.vllm.defaults import fp8_kv_backends, min_capability, vllm_defaults

def _need(precision: str) -> float:
    """Minimum NVIDIA compute capability for a precision, from the pinned vLLM's code
    (CudaPlatform.check_if_supports_dtype / supports_fp8, each quantization's get_min_capability)."""
    d = vllm_defaults()
    if precision == "bf16":
        return d.bf16_min_capability / 10
    if precision == "fp8":
        return d.fp8_native_min_capability / 10
    if precision == "awq-int4":
        return min_capability("awq")
    if precision == "gptq-int4":
        return min_capability("gptq")
    return rules()["vllm"]["nvidia_min_compute_capability"]


def _cc(c: Candidate) -> float | None:
    return c.pool.accelerator.compute_capability


def runtime_reasons(model: ModelFacts, c: Candidate) -> list[str]:
    r, acc = rules(), c.pool.accelerator
    out = []
    if c.runtime not in acc.runtimes:
        out.append(f"{c.runtime} does not serve {acc.key} (catalog runtimes: {', '.join(acc.runtimes)})")
    if model.runtime_preference not in ("auto", c.runtime):
        out.append(f"serving.runtime asks for {model.runtime_preference}")
    if c.runtime == "vllm":
        if acc.vendor == "nvidia" and _cc(c) is not None and _cc(c) < r["vllm"]["nvidia_min_compute_capability"]:
            out.append(f"vLLM needs compute capability {r['vllm']['nvidia_min_compute_capability']}; {acc.key} has {_cc(c)}")
        if acc.vendor == "amd" and acc.gfx_target not in r["vllm"]["amd_gfx_targets"]:
            out.append(f"vLLM's ROCm build does not target {acc.gfx_target}")
        if acc.vendor not in ("nvidia", "amd"):
            out.append(f"no vLLM build for {acc.vendor}")
    elif c.runtime == "triton":
        t = r["triton"]
        if acc.vendor == "nvidia" and (_cc(c) or 0) < t["nvidia_min_compute_capability"]:
            out.append(f"Triton needs compute capability {t['nvidia_min_compute_capability']}; {acc.key} has {_cc(c)}")
        if acc.vendor == "amd" and acc.gfx_target not in t["amd_gfx_targets"]:
            out.append(f"Triton does not target {acc.gfx_target}")
    if c.runtime in ("triton", "cpu"):
        families = r[c.runtime]["families"]
        if model.family not in families:
            out.append(f"the fallback runtime implements {', '.join(families)}, not {model.family}"
                       + (" (no MoE layers)" if model.is_moe else ""))
        if c.nodes > 1:
            out.append("the fallback runtime is single-node")
    return out


def precision_reasons(model: ModelFacts, c: Candidate) -> list[str]:
    r, acc, p = rules(), c.pool.accelerator, c.precision
    out = []
    if c.runtime in ("triton", "cpu"):
        allowed = r[c.runtime]["precisions"]
        if p not in allowed:
            out.append(f"the {'CPU' if c.runtime == 'cpu' else 'Triton'} runtime computes in {', '.join(allowed)}, not {p}")
    if not acc.is_gpu:
        return out
    if p == "fp32" and any(q in model.precisions for q in ("bf16", "fp16")):
        out.append("fp32 on a GPU: a 16-bit precision serves the same weights at half the memory and twice the speed")
    if acc.vendor == "nvidia":
        cc = _cc(c) or 0.0
        need = _need(p)
        if p == "fp8" and cc < need:
            weight_only = min_capability("fp8")  # Fp8Config: weight-only through Marlin below native fp8
            if c.runtime != "vllm" or cc < weight_only:
                out.append(f"fp8 needs compute capability {need} (weight-only {weight_only}); {acc.key} has {cc}")
        elif cc < need:
            out.append(f"{p} needs compute capability {need}; {acc.key} has {cc}")
        if p == "bf16" and not acc.bf16_tflops and cc >= need:
            out.append(f"{acc.key} has no bf16 tensor cores")
    elif acc.vendor == "amd":
        allowed = r["amd_precisions"].get(acc.gfx_target, ["fp16", "bf16", "fp32"])
        base = "fp16" if p in ("awq-int4", "gptq-int4") else p
        if base not in allowed:
            out.append(f"{p} is not a native type on {acc.gfx_target} ({', '.join(allowed)})")
    if c.kv_cache_dtype == "fp8" and not fp8_kv_backends(_cc(c), vendor=acc.vendor, gfx=acc.gfx_target):
        where = f"compute capability {_cc(c)}" if acc.vendor == "nvidia" else acc.gfx_target
        out.append(f"no vLLM attention backend stores an fp8 KV cache on {acc.key} ({where})")
    return out


def parallel_reasons(model: ModelFacts, c: Candidate) -> list[str]:
    out = []
    if model.attention_heads % c.tp:
        out.append(f"{model.attention_heads} attention heads are not divisible by tp={c.tp}")
    elif c.tp > model.kv_heads and c.tp % model.kv_heads:
        out.append(f"tp={c.tp} cannot replicate {model.kv_heads} KV heads evenly")
    elif model.kv_heads > c.tp and model.kv_heads % c.tp:
        out.append(f"{model.kv_heads} KV heads are not divisible by tp={c.tp}")
    if c.pp > model.layers:
        out.append(f"pp={c.pp} exceeds the {model.layers} layers")
    if c.devices > c.pool.count * c.pool.nodes:
        out.append(f"needs {c.devices} devices; the pool has {c.pool.count * c.pool.nodes}")
    return out


def static_reasons(model: ModelFacts, c: Candidate) -> list[str]:
    """Everything decidable before estimating memory."""
    return runtime_reasons(model, c) + precision_reasons(model, c) + parallel_reasons(model, c)
