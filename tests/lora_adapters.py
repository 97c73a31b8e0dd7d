"""PEFT LoRA adapters made here, never downloaded: seeded random tensors with a model's shapes,
written as PEFT writes them (``adapter_config.json`` + ``adapter_model.safetensors``), and the
independent reference: the base weights with ``scale * B @ A`` merged in."""

from __future__ import annotations

import json
from types import SimpleNamespace
from pathlib import Path

import torch

MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
_PARENT = {"q_proj": "self_attn", "k_proj": "self_attn", "v_proj": "self_attn", "o_proj": "self_attn",
           "gate_proj": "mlp", "up_proj": "mlp", "down_proj": "mlp"}


def dims(cfg) -> dict[str, tuple[int, int]]:
    """(in, out) per module, from a ModelConfig (or anything with its fields)."""
    h, i = cfg.hidden_size, cfg.intermediate_size
    q, kv = cfg.num_heads * cfg.head_dim, cfg.num_kv_heads * cfg.head_dim
    return {"q_proj": (h, q), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (q, h),
            "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}


def tensors(cfg, seed: int, rank: int, targets=MODULES, std: float = 0.05, zero_b: bool = False) -> dict:
    g = torch.Generator().manual_seed(seed)
    out = {}
    for layer in range(cfg.num_layers):
        for m in targets:
            d_in, d_out = dims(cfg)[m]
            key = f"base_model.model.model.layers.{layer}.{_PARENT[m]}.{m}"
            out[f"{key}.lora_A.weight"] = torch.randn(rank, d_in, generator=g) * std
            b = torch.randn(d_out, rank, generator=g) * std
            out[f"{key}.lora_B.weight"] = torch.zeros_like(b) if zero_b else b
    return out


def write_adapter(directory: Path, cfg, seed: int, rank: int = 8, alpha: float = 16, targets=MODULES,
                  std: float = 0.05, zero_b: bool = False, base: str = "HuggingFaceTB/SmolLM2-135M-Instruct",
                  extra_config: dict | None = None, weights: dict | None = None) -> Path:
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    config = {"peft_type": "LORA", "r": rank, "lora_alpha": alpha, "target_modules": list(targets),
              "base_model_name_or_path": base, "bias": "none", "lora_dropout": 0.0, "task_type": "CAUSAL_LM",
              **(extra_config or {})}
    (directory / "adapter_config.json").write_text(json.dumps(config))
    w = weights if weights is not None else tensors(cfg, seed, rank, targets, std, zero_b)
    save_file({k: v.contiguous() for k, v in w.items()}, str(directory / "adapter_model.safetensors"))
    return directory


def merged(weights: dict, directory: Path) -> dict:
    """The base weights with the adapter merged in (W + alpha/r * B @ A): computed from the files
    alone, without the runtime's LoRA code."""
    from safetensors.torch import load_file

    config = json.loads((directory / "adapter_config.json").read_text())
    scale = config["lora_alpha"] / config["r"]
    lora = load_file(str(directory / "adapter_model.safetensors"))
    out = dict(weights)
    for key, a in lora.items():
        if ".lora_A." not in key:
            continue
        b = lora[key.replace(".lora_A.", ".lora_B.")]
        name = key.replace("base_model.model.", "", 1).replace(".lora_A.weight", ".weight")
        out[name] = (out[name].double() + scale * (b.double() @ a.double())).to(out[name].dtype)
    return out


# SmolLM2-135M's shapes, for tests that write adapters without loading the model
# (tests/runtime/test_lora.py checks them against the loaded GGUF's config).
SMOL = SimpleNamespace(hidden_size=576, intermediate_size=1536, num_layers=30, num_heads=9, num_kv_heads=3, head_dim=64)
