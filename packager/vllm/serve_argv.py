"""Build the `vllm serve` command line of a profile, for vLLM 0.33.0 only.

Pure Python, no vllm/torch import: the planner calls this at package time and
in the launcher. Every flag emitted here exists in vLLM 0.33.0's own parser
(checked by `packager.vllm.contract` against a snapshot of that parser, and in
CI by the real parser). Value sets (dtypes, quantizations, what ROCm accepts)
are data in `data/defaults.yaml`, read from vLLM's source.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

VLLM_VERSION = "0.33.0"

_DATA = Path(__file__).parent / "data"

VENDORS = ("nvidia", "amd")


@lru_cache(maxsize=None)
def _load(name: str) -> dict[str, Any]:
    with open(_DATA / name, encoding="utf-8") as f:
        data = yaml.safe_load(f)
    # A data file for another vLLM would silently produce wrong flags.
    if str(data.get("vllm_version")) != VLLM_VERSION:
        raise RuntimeError(f"{name} is for vLLM {data.get('vllm_version')}, not {VLLM_VERSION}")
    return data


@dataclass(frozen=True)
class VllmImage:
    vendor: str
    repository: str
    tag: str
    digest: str | None  # null until refreshed from a registry (see data/images.yaml)
    source: str

    @property
    def ref(self) -> str:
        """`repo@digest` when the digest is known, else `repo:tag`."""
        if self.digest:
            return f"{self.repository}@{self.digest}"
        return f"{self.repository}:{self.tag}"


def vllm_image(vendor: str) -> VllmImage:
    """The upstream vLLM 0.33.0 OpenAI-server image for `vendor` (nvidia|amd)."""
    images = _load("images.yaml")["images"]
    if vendor not in images:
        raise ValueError(f"no vLLM image for vendor {vendor!r}; known: {sorted(images)}")
    row = images[vendor]
    return VllmImage(vendor=vendor, repository=row["repository"], tag=str(row["tag"]),
                     digest=row.get("digest"), source=row["source"])


def vllm_images() -> dict[str, VllmImage]:
    return {v: vllm_image(v) for v in _load("images.yaml")["images"]}


@dataclass(frozen=True)
class LoraSpec:
    """LoRA serving: ``--enable-lora --max-loras --max-lora-rank --max-cpu-loras --lora-modules``."""

    modules: tuple[tuple[str, str], ...]  # (name, path or repo) per adapter
    max_loras: int
    max_lora_rank: int  # one of lora_ranks()
    max_cpu_loras: int


def lora_ranks() -> tuple[int, ...]:
    """The values vLLM's --max-lora-rank accepts (data/defaults.yaml, from vLLM's source)."""
    return tuple(_load("defaults.yaml")["lora"]["max_lora_ranks"])


def lora_rank_for(rank: int) -> int | None:
    """The smallest accepted --max-lora-rank that holds ``rank``; None above the largest."""
    return next((r for r in lora_ranks() if r >= rank), None)


@dataclass(frozen=True)
class VllmServeSpec:
    model_ref: str
    served_model_name: str
    tensor_parallel_size: int
    pipeline_parallel_size: int
    dtype: str  # "bfloat16" | "float16" | "auto" (any vLLM ModelDType)
    kv_cache_dtype: str  # "auto" | "fp8" | "fp8_e4m3" | ...
    max_model_len: int
    gpu_memory_utilization: float
    max_num_seqs: int
    quantization: str | None  # a vLLM 0.33.0 QuantizationMethods name, or None
    vendor: str  # "nvidia" | "amd"
    nodes: int = 1
    enable_prefix_caching: bool = True
    enable_chunked_prefill: bool | None = None  # None: leave vLLM's default
    port: int = 8000
    host: str = "0.0.0.0"
    # Optional extras (not in the planner's contract): maximum tokens per
    # scheduler step; None leaves vLLM's per-GPU default.
    max_num_batched_tokens: int | None = None
    # ASGI middlewares (import paths) vLLM loads: ours serves NIM's health paths.
    middleware: tuple[str, ...] = ()
    # The Hub revision of model_ref when it is a repo id (None for a local path).
    revision: str | None = None
    # vLLM's tool-call parser: tools are served (tool_choice auto, required, named) only with one.
    tool_call_parser: str | None = None
    # Embedding models: `--runner pooling --convert embed` and the pooling as vLLM's PoolerConfig (JSON).
    runner: str | None = None
    convert: str | None = None
    pooler_config: str | None = None
    lora: LoraSpec | None = None


def spec_problems(spec: VllmServeSpec) -> list[str]:
    """Why `spec` cannot be turned into a valid vLLM 0.33.0 command; [] if it can."""
    d = _load("defaults.yaml")
    out: list[str] = []
    if spec.vendor not in VENDORS:
        out.append(f"vendor {spec.vendor!r} is not one vLLM serves here; use one of {list(VENDORS)}")
    if not spec.model_ref:
        out.append("model_ref is empty")
    if not spec.served_model_name:
        out.append("served_model_name is empty")
    for name in ("tensor_parallel_size", "pipeline_parallel_size", "max_model_len",
                 "max_num_seqs", "nodes"):
        v = getattr(spec, name)
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            out.append(f"{name} must be an integer >= 1, got {v!r}")
    if spec.max_num_batched_tokens is not None and (
            not isinstance(spec.max_num_batched_tokens, int) or spec.max_num_batched_tokens < 1):
        out.append(f"max_num_batched_tokens must be an integer >= 1, got {spec.max_num_batched_tokens!r}")
    # CacheConfig.gpu_memory_utilization: Field(gt=0, le=1)
    if not (isinstance(spec.gpu_memory_utilization, (int, float))
            and 0 < spec.gpu_memory_utilization <= 1):
        out.append(f"gpu_memory_utilization must be in (0, 1], got {spec.gpu_memory_utilization!r}")
    if not (isinstance(spec.port, int) and 0 < spec.port < 65536):
        out.append(f"port must be in 1..65535, got {spec.port!r}")
    if spec.dtype not in d["model_dtypes"]["values"]:
        out.append(f"dtype {spec.dtype!r} is not a vLLM {VLLM_VERSION} dtype; "
                   f"use one of {d['model_dtypes']['values']}")
    kv = d["kv_cache_dtypes"]
    if spec.kv_cache_dtype not in kv["values"]:
        out.append(f"kv_cache_dtype {spec.kv_cache_dtype!r} is not a vLLM {VLLM_VERSION} "
                   f"cache dtype; use one of {kv['values']}")
    elif spec.vendor == "amd" and spec.kv_cache_dtype not in kv["rocm"]:
        out.append(f"kv_cache_dtype {spec.kv_cache_dtype!r} is not supported on ROCm; "
                   f"use one of {kv['rocm']}")
    if spec.lora is not None:
        lo = spec.lora
        if lo.max_lora_rank not in lora_ranks():
            out.append(f"max_lora_rank {lo.max_lora_rank} is not one vLLM {VLLM_VERSION} accepts; use one of {list(lora_ranks())}")
        if not 1 <= lo.max_loras <= lo.max_cpu_loras:
            out.append(f"need 1 <= max_loras ({lo.max_loras}) <= max_cpu_loras ({lo.max_cpu_loras})")
        if not lo.modules:
            out.append("LoRA serving needs at least one adapter")
    q = d["quantization"]
    if spec.quantization is not None:
        if spec.quantization not in q["methods"]:
            out.append(f"quantization {spec.quantization!r} is not a vLLM {VLLM_VERSION} method")
        elif spec.quantization in q["deprecated"]:
            out.append(f"quantization {spec.quantization!r} is deprecated in vLLM {VLLM_VERSION} "
                       "(needs --allow-deprecated-quantization); pick another method")
        elif spec.vendor == "amd" and spec.quantization not in q["rocm"]:
            out.append(f"quantization {spec.quantization!r} is not supported on ROCm; "
                       f"use one of {q['rocm']}")
    return out


def _quantization_flag(spec: VllmServeSpec) -> str | None:
    if spec.quantization is None:
        return None
    if spec.vendor == "amd":
        return _load("defaults.yaml")["quantization"]["rocm_rewrites"].get(
            spec.quantization, spec.quantization)
    return spec.quantization


def tool_call_parser(served_name: str) -> str:
    """The tool-call parser for a model, by its served (Hub) name: data/defaults.yaml `tool_call_parsers`."""
    table = _load("defaults.yaml")["tool_call_parsers"]
    return next((parser for prefix, parser in table["by_served_name_prefix"].items()
                 if served_name.startswith(prefix)), table["default"])


def build_vllm_argv(spec: VllmServeSpec) -> list[str]:
    """`["vllm", "serve", MODEL, flags...]` for vLLM 0.33.0; ValueError if `spec` is invalid.

    Flags are written explicitly even where they equal vLLM's default, so the
    plan states the whole configuration and a default change in a later vLLM
    cannot change a locked plan's meaning.
    """
    problems = spec_problems(spec)
    if problems:
        raise ValueError("invalid vLLM serve spec: " + "; ".join(problems))
    argv = [
        "vllm", "serve", spec.model_ref,
        "--served-model-name", spec.served_model_name,
        *(("--revision", spec.revision) if spec.revision else ()),
        "--host", spec.host,
        "--port", str(spec.port),
        "--tensor-parallel-size", str(spec.tensor_parallel_size),
        "--pipeline-parallel-size", str(spec.pipeline_parallel_size),
        "--dtype", spec.dtype,
        "--kv-cache-dtype", spec.kv_cache_dtype,
        "--max-model-len", str(spec.max_model_len),
        "--gpu-memory-utilization", repr(float(spec.gpu_memory_utilization)),
        "--max-num-seqs", str(spec.max_num_seqs),
    ]
    if spec.max_num_batched_tokens is not None:
        argv += ["--max-num-batched-tokens", str(spec.max_num_batched_tokens)]
    if spec.runner:
        argv += ["--runner", spec.runner]
    if spec.convert:
        argv += ["--convert", spec.convert]
    if spec.pooler_config:
        argv += ["--pooler-config", spec.pooler_config]
    quant = _quantization_flag(spec)
    if quant is not None:
        argv += ["--quantization", quant]
    # EnableDisableAction pairs in 0.33.0: --enable-x / --disable-x are the
    # documented spellings (--no-enable-x is only kept hidden for old scripts).
    argv.append("--enable-prefix-caching" if spec.enable_prefix_caching
                else "--disable-prefix-caching")
    if spec.enable_chunked_prefill is not None:
        argv.append("--enable-chunked-prefill" if spec.enable_chunked_prefill
                    else "--disable-chunked-prefill")
    if spec.tool_call_parser:
        argv += ["--enable-auto-tool-choice", "--tool-call-parser", spec.tool_call_parser]
    if spec.lora is not None:
        lo = spec.lora
        argv += ["--enable-lora", "--max-loras", str(lo.max_loras), "--max-lora-rank", str(lo.max_lora_rank),
                 "--max-cpu-loras", str(lo.max_cpu_loras), "--lora-modules"]
        # The JSON form names the base model, so /v1/models shows each adapter's parent.
        argv += [json.dumps({"name": n, "path": p, "base_model_name": spec.served_model_name}, separators=(",", ":"))
                 for n, p in lo.modules]
    for mw in spec.middleware:
        argv += ["--middleware", mw]
    if spec.nodes > 1:
        # Multi-node: Ray places the tp x pp workers across nodes (the launcher
        # starts the Ray cluster); mp alone needs per-node --nnodes/--node-rank.
        argv += ["--distributed-executor-backend", "ray"]
    return argv
