"""Assemble an engine from a loaded model and the command-line limits."""

from __future__ import annotations

import dataclasses
import logging

from .config import EngineConfig
from .engine import LLMEngine
from .kernels import select_ops
from .kv_cache import KVCache
from .loader import DTYPES, LoadedModel
from .model import build_model
from .runner import ModelRunner

log = logging.getLogger(__name__)


def _available_memory_bytes() -> int | None:
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def create_engine(
    loaded: LoadedModel,
    cfg: EngineConfig,
    dtype: str = "float32",
    device: str = "cpu",
    kernels: str = "torch",
    linear: str = "auto",
    quantization: str | None = None,
    lora=None,
) -> LLMEngine:
    """``lora``: a ``lora.manager.LoraConfig`` to serve adapters (registered on ``engine.lora``)."""
    mcfg = loaded.config
    if cfg.batch_invariant and cfg.enable_prefix_caching:
        # A cache hit changes where a prompt's chunks start, so its bits
        # would depend on what ran before it.
        log.info("batch-invariant mode: prefix caching off")
        cfg = dataclasses.replace(cfg, enable_prefix_caching=False)
    if cfg.max_model_len > mcfg.max_position_embeddings:
        raise ValueError(
            f"--max-model-len {cfg.max_model_len} exceeds the model's "
            f"max_position_embeddings {mcfg.max_position_embeddings}"
        )
    if mcfg.sliding_window is not None and cfg.max_model_len > mcfg.sliding_window:
        raise ValueError(
            f"--max-model-len {cfg.max_model_len} exceeds the sliding window "
            f"{mcfg.sliding_window}, which this runtime does not implement"
        )
    torch_dtype = DTYPES[dtype]
    need = KVCache.bytes_needed(mcfg, cfg.kv_blocks, cfg.block_size, torch_dtype)
    avail = _available_memory_bytes() if device == "cpu" else None
    if avail is not None and need > 0.8 * avail:
        raise ValueError(
            f"KV cache of {cfg.kv_blocks} blocks x {cfg.block_size} tokens needs "
            f"{need / 2**30:.2f} GiB, more than 80% of the {avail / 2**30:.2f} GiB available; "
            "lower --max-num-seqs, --max-model-len or --num-gpu-blocks-override"
        )
    ops = select_ops(device=device, kernels=kernels)
    weights = {k: v.to(device) for k, v in loaded.weights.items()}
    model = build_model(mcfg, weights, cfg.max_model_len, linear, quantization)
    kv = KVCache(mcfg, cfg.kv_blocks, cfg.block_size, torch_dtype, device)
    log.info(
        "engine: %s, %d layers, dtype %s, quantization %s, ops %s, KV %d blocks x %d tokens (%.2f GiB), "
        "prefix caching %s%s",
        mcfg.architecture, mcfg.num_layers, dtype, quantization or "none", ops.name, cfg.kv_blocks,
        cfg.block_size, need / 2**30, "on" if cfg.enable_prefix_caching else "off",
        ", batch-invariant" if cfg.batch_invariant else "",
    )
    manager = None
    if lora is not None:
        from .lora.adapter import Shapes
        from .lora.manager import LoraManager

        # The delta runs beside the (possibly int4/int8) base matmuls in the model's dtype.
        manager = LoraManager(Shapes.of(mcfg), lora, torch_dtype, device)
        cfg = dataclasses.replace(cfg, max_loras=lora.max_loras)
        log.info("LoRA: %d slots of rank <= %d (%.1f MiB), %d loaded at most", lora.max_loras, lora.max_lora_rank,
                 manager.slots.nbytes / 2**20, lora.cpu_loras)
    runner = ModelRunner(model, kv, ops, device, batch_invariant=cfg.batch_invariant, lora=manager)
    return LLMEngine(runner, loaded.tokenizer, cfg, loaded.eos_token_ids)
