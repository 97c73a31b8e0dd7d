"""vLLM 0.33.0's defaults and memory facts, as data read from its source.

`data/defaults.yaml` holds the values, each with the vLLM file and symbol it
came from; this module loads it once into a frozen object and answers the
questions the planner asks (minimum compute capability of a quantization,
vLLM's default batch sizes on a device, KV bytes per token). No vllm import.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from types import MappingProxyType
from typing import Any, Mapping

from packager.vllm.serve_argv import VLLM_VERSION, _load

USAGE_CONTEXTS = ("openai_api_server", "llm_class")  # `vllm serve` / Python `LLM(...)`


@dataclass(frozen=True)
class BatchTier:
    name: str
    min_memory_gib: float
    excludes: tuple[str, ...]
    max_num_seqs: Mapping[str, int]
    max_num_batched_tokens: Mapping[str, int]


@dataclass(frozen=True)
class VllmDefaults:
    vllm_version: str
    gpu_memory_utilization: float
    block_size: int
    model_dtypes: tuple[str, ...]
    kv_cache_dtypes: tuple[str, ...]
    kv_cache_dtypes_rocm: tuple[str, ...]
    kv_dtype_bytes: Mapping[str, int]
    quantization_methods: tuple[str, ...]
    quantization_deprecated: tuple[str, ...]
    quantization_rocm: tuple[str, ...]
    quantization_min_capability: Mapping[str, int]  # major*10+minor, as vLLM writes it
    bf16_min_capability: int
    fp8_native_min_capability: int
    batch_tiers: tuple[BatchTier, ...]
    cpu_batch_per_world_size: Mapping[str, Mapping[str, int]]
    batch_fallback: Mapping[str, int]
    throughput_mode_multiplier: int
    attention_backends: Mapping[str, Mapping[str, Any]]
    rocm_gfx_targets: Mapping[str, Mapping[str, Any]]
    sources: Mapping[str, str]  # fact -> "vllm/file.py Symbol"


def _ro(d: dict) -> Mapping:
    return MappingProxyType(dict(d))


@lru_cache(maxsize=1)
def vllm_defaults() -> VllmDefaults:
    d = _load("defaults.yaml")
    b = d["batch_defaults"]
    tiers = tuple(
        BatchTier(name=t["name"], min_memory_gib=float(t["min_memory_gib"]),
                  excludes=tuple(t.get("excludes") or ()),
                  max_num_seqs=_ro(t["max_num_seqs"]),
                  max_num_batched_tokens=_ro(t["max_num_batched_tokens"]))
        for t in b["tiers"])
    ab = d["attention_backends"]["backends"]
    return VllmDefaults(
        vllm_version=str(d["vllm_version"]),
        gpu_memory_utilization=float(d["memory"]["gpu_memory_utilization"]),
        block_size=int(d["kv_cache"]["block_size"]),
        model_dtypes=tuple(d["model_dtypes"]["values"]),
        kv_cache_dtypes=tuple(d["kv_cache_dtypes"]["values"]),
        kv_cache_dtypes_rocm=tuple(d["kv_cache_dtypes"]["rocm"]),
        kv_dtype_bytes=_ro(d["kv_cache_dtypes"]["bytes_per_element"]),
        quantization_methods=tuple(d["quantization"]["methods"]),
        quantization_deprecated=tuple(d["quantization"]["deprecated"]),
        quantization_rocm=tuple(d["quantization"]["rocm"]),
        quantization_min_capability=_ro(d["quantization_min_capability"]["values"]),
        bf16_min_capability=int(d["compute_capability"]["bfloat16_min"]),
        fp8_native_min_capability=int(d["compute_capability"]["fp8_native_min"]),
        batch_tiers=tiers,
        cpu_batch_per_world_size=_ro({k: _ro(v) for k, v in b["cpu_per_world_size"].items()}),
        batch_fallback=_ro(b["fallback"]),
        throughput_mode_multiplier=int(b["throughput_mode_multiplier"]),
        attention_backends=_ro({k: _ro(v) for k, v in ab.items()}),
        rocm_gfx_targets=_ro({k: _ro(v) for k, v in d["rocm"]["gfx_targets"].items()}),
        sources=_ro({
            "gpu_memory_utilization": d["memory"]["gpu_memory_utilization_source"],
            "block_size": d["kv_cache"]["block_size_source"],
            "kv_bytes_per_token": d["kv_cache"]["bytes_per_token_source"],
            "kv_heads_per_gpu": d["kv_cache"]["kv_heads_per_gpu_source"],
            "batch_defaults": b["source"],
            "quantization_min_capability": d["quantization_min_capability"]["source"],
            "bf16_min_capability": d["compute_capability"]["bfloat16_source"],
            "fp8_native_min_capability": d["compute_capability"]["fp8_native_source"],
            "kv_cache_dtypes": d["kv_cache_dtypes"]["source"],
            "quantization_methods": d["quantization"]["source"],
            "quantization_rocm": d["quantization"]["rocm_source"],
            "rocm_gfx_targets": d["rocm"]["source"],
        }),
    )


def min_capability(quantization: str | None) -> float:
    """Minimum NVIDIA compute capability (e.g. 7.5) vLLM accepts for a quantization method.

    None means no quantization: no constraint from this fact (0.0).
    """
    if quantization is None:
        return 0.0
    caps = vllm_defaults().quantization_min_capability
    if quantization not in caps:
        raise ValueError(f"unknown vLLM {VLLM_VERSION} quantization {quantization!r}; "
                         f"known: {sorted(caps)}")
    return caps[quantization] / 10


def _memory_and_name(accelerator: str | float | int) -> tuple[float, str, float | None]:
    """(memory GiB, lower-case name, compute capability) of a catalog key or a memory size."""
    if isinstance(accelerator, (int, float)) and not isinstance(accelerator, bool):
        return float(accelerator), "", None
    from packager.catalog import catalog  # the accelerator catalog: data only, no torch

    acc = catalog().get(accelerator)
    if acc is None:
        raise ValueError(f"unknown accelerator {accelerator!r}; give a catalog key or memory in GiB")
    if acc.vendor == "cpu":
        return 0.0, "cpu", None
    return float(acc.memory_gib or 0), f"{acc.key} {acc.name}".lower(), acc.compute_capability


def batch_tier(accelerator: str | float | int) -> BatchTier:
    """vLLM's batch-default tier for a device (catalog key) or a device memory size in GiB."""
    mem, name, cc = _memory_and_name(accelerator)
    for tier in vllm_defaults().batch_tiers:
        if mem < tier.min_memory_gib:
            continue
        if "a100" in tier.excludes and "a100" in name:
            continue
        if "gb10" in tier.excludes and (cc == 12.1 or "gb10" in name):
            continue
        return tier
    return vllm_defaults().batch_tiers[-1]


def _default(field: str, accelerator, usage: str, world_size: int, throughput_mode: bool) -> int:
    if usage not in USAGE_CONTEXTS:
        raise ValueError(f"usage must be one of {USAGE_CONTEXTS}, got {usage!r}")
    d = vllm_defaults()
    if accelerator == "cpu" or (isinstance(accelerator, str) and _memory_and_name(accelerator)[1] == "cpu"):
        value = d.cpu_batch_per_world_size[field][usage] * world_size
    else:
        value = getattr(batch_tier(accelerator), field)[usage]
    return value * (d.throughput_mode_multiplier if throughput_mode else 1)


def default_max_num_seqs(accelerator_key_or_memory: str | float | int, *,
                         usage: str = "openai_api_server", world_size: int = 1,
                         throughput_mode: bool = False) -> int:
    """vLLM 0.33.0's --max-num-seqs when none is given (EngineArgs.get_batch_defaults)."""
    return _default("max_num_seqs", accelerator_key_or_memory, usage, world_size, throughput_mode)


def default_max_num_batched_tokens(accelerator_key_or_memory: str | float | int, *,
                                   usage: str = "openai_api_server", world_size: int = 1,
                                   throughput_mode: bool = False) -> int:
    """vLLM 0.33.0's --max-num-batched-tokens before the max_model_len adjustments."""
    return _default("max_num_batched_tokens", accelerator_key_or_memory, usage, world_size,
                    throughput_mode)


def kv_heads_per_gpu(total_kv_heads: int, tensor_parallel_size: int) -> int:
    """ModelConfig.get_num_kv_heads: KV heads are split over tp, replicated past it."""
    return max(1, total_kv_heads // tensor_parallel_size)


def kv_dtype_bytes(kv_cache_dtype: str, model_dtype: str = "bfloat16") -> int:
    """Bytes per cached element; "auto" means the model's dtype."""
    table = vllm_defaults().kv_dtype_bytes
    key = model_dtype if kv_cache_dtype == "auto" else kv_cache_dtype
    if key not in table:
        raise ValueError(f"no dense byte size for KV dtype {key!r} (known: {sorted(table)})")
    return table[key]


def kv_bytes_per_token(num_layers: int, num_kv_heads: int, head_dim: int, *,
                       kv_cache_dtype: str = "auto", model_dtype: str = "bfloat16",
                       tensor_parallel_size: int = 1, head_dim_v: int | None = None) -> int:
    """KV-cache bytes per token on one GPU, as vLLM sizes a full-attention page.

    AttentionSpec: per layer num_kv_heads x (head_size + head_size_v) x dtype
    bytes, head_size_v = head_size unless the model says otherwise.
    """
    heads = kv_heads_per_gpu(num_kv_heads, tensor_parallel_size)
    hv = head_dim if head_dim_v is None else head_dim_v
    return num_layers * heads * (head_dim + hv) * kv_dtype_bytes(kv_cache_dtype, model_dtype)


def fp8_kv_backends(compute_capability: float | None = None, *, vendor: str = "nvidia",
                    gfx: str | None = None) -> list[str]:
    """Attention backends that would store an fp8 (e4m3) KV cache on this device."""
    out = []
    for name, b in vllm_defaults().attention_backends.items():
        platforms = b["platform"] if isinstance(b["platform"], (list, tuple)) else [b["platform"]]
        if "fp8" not in b["kv_cache_dtypes"]:
            continue
        if vendor == "amd":
            if "rocm" in platforms and (not b.get("gfx") or gfx in b["gfx"]):
                out.append(name)
            continue
        if "cuda" not in platforms or compute_capability is None:
            continue
        cc = round(compute_capability * 10)
        if cc < b.get("min_capability", 0) or cc > b.get("max_capability", 10_000):
            continue
        fam = b.get("fp8_kv_capabilities")
        if fam and not any(cc // 10 == f // 10 for f in fam):
            continue
        out.append(name)
    return out
