"""The exact engine command line of a profile: `vllm serve ...` or our fallback runtime."""
from __future__ import annotations

from packager.facts import ModelFacts
from packager.planner.checkpoint import candidate_source
from packager.planner.types import Candidate
from packager.vllm.serve_argv import VLLM_VERSION, LoraSpec, VllmServeSpec, build_vllm_argv, tool_call_parser
from runtimes.layout import variant_dir
from runtimes.vllm_health import MIDDLEWARE as HEALTH_MIDDLEWARE

FALLBACK_ENGINE = "packager-fallback"
TORCH_DTYPE = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def model_ref_for(model: ModelFacts, c: Candidate, default_ref: str | None) -> str:
    """The engine's model argument. `default_ref` set means in-image planning (build, launcher): a
    variant then lives in its own directory under the model dir, baked or downloaded there."""
    if c.variant is not None:
        if default_ref:
            return variant_dir(c.variant.name)
        s = c.variant.source
        return s.get("repo") or s.get("path") or f"{s.get('package')}/{s.get('file')}"
    if default_ref:
        return default_ref
    s = model.source
    return model.local_path or s.get("repo") or s.get("path") or f"{s.get('package')}/{s.get('file')}"


def _vllm_dtype(c: Candidate) -> str:
    if c.precision in TORCH_DTYPE:
        return TORCH_DTYPE[c.precision]
    if c.precision in ("awq-int4", "gptq-int4"):
        return "float16"  # int4 kernels take fp16 activations
    return "bfloat16" if c.pool.accelerator.bf16_tflops else "float16"  # fp8: activations' dtype


def _quantization(c: Candidate) -> str | None:
    if c.precision == "fp8":
        return "fp8"
    if c.variant is not None:
        return c.variant.method
    return None


def engine_for(c: Candidate) -> str:
    return f"vllm=={VLLM_VERSION}" if c.runtime == "vllm" else FALLBACK_ENGINE


def engine_argv(model: ModelFacts, c: Candidate, *, model_ref: str | None, max_model_len: int,
                max_num_seqs: int, memory_utilization: float, max_num_batched_tokens: int | None = None,
                lora: LoraSpec | None = None) -> list[str]:
    ref = model_ref_for(model, c, model_ref)
    embed = model.task == "embed"
    if c.runtime == "vllm":
        spec = VllmServeSpec(
            model_ref=ref, served_model_name=model.api_name, tensor_parallel_size=c.tp,
            # a Hub repo id is fetched at its pinned revision, never at whatever `main` is today
            revision=None if ref.startswith("/") else candidate_source(model, c).get("revision"),
            tool_call_parser=None if embed else tool_call_parser(model.api_name),
            # bidirectional attention: no prefix of one input is reusable by another
            enable_prefix_caching=not embed, **(pooling_flags(model) if embed else {}),
            pipeline_parallel_size=c.pp, dtype=_vllm_dtype(c), kv_cache_dtype=c.kv_cache_dtype,
            max_model_len=max_model_len, gpu_memory_utilization=memory_utilization, max_num_seqs=max_num_seqs,
            quantization=_quantization(c), vendor=c.pool.accelerator.vendor, nodes=c.nodes,
            middleware=(HEALTH_MIDDLEWARE,), max_num_batched_tokens=max_num_batched_tokens,
            # a prefill budget below the context only works chunked: say so rather than rely on the default
            enable_chunked_prefill=(True if not embed and max_num_batched_tokens and max_num_batched_tokens < max_model_len
                                    else None),
            lora=lora,
        )
        return build_vllm_argv(spec)
    return [
        "python3", "-m", "runtimes.fallback",
        "--model", ref,
        "--served-model-name", model.api_name,
        "--dtype", TORCH_DTYPE.get(c.precision, "float32"),
        "--kv-cache-dtype", "auto",
        "--max-model-len", str(max_model_len),
        "--max-num-seqs", str(max_num_seqs),
        "--device", "cpu" if c.runtime == "cpu" else "cuda",
        "--kernels", "torch" if c.runtime == "cpu" else "triton",
        "--host", "0.0.0.0",
        "--port", "8000",
        *(("--max-num-batched-tokens", str(max_num_batched_tokens)) if embed and max_num_batched_tokens else ()),
        *fallback_lora_flags(lora),
    ]


def pooling_flags(model: ModelFacts) -> dict:
    """vLLM 0.33.0's pooling runner for an embedding model, with the model's own pooling written out
    (PoolerConfig: `seq_pooling_type`; `use_activation` is the embed task's normalisation)."""
    import json

    config = {"seq_pooling_type": (model.pooling or "mean").upper(), "use_activation": model.normalize}
    return {"runner": "pooling", "convert": "embed", "pooler_config": json.dumps(config, separators=(",", ":"))}


def fallback_lora_flags(spec: LoraSpec | None) -> list[str]:
    """The fallback runtime's spelling of vLLM's LoRA flags (NAME=PATH items)."""
    if spec is None:
        return []
    return ["--max-loras", str(spec.max_loras), "--max-lora-rank", str(spec.max_lora_rank),
            "--max-cpu-loras", str(spec.max_cpu_loras), "--lora-modules", *(f"{n}={p}" for n, p in spec.modules)]
