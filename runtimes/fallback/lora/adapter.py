"""Reading one PEFT LoRA adapter (``adapter_config.json`` + ``adapter_model.safetensors``)
and checking it against the model it is meant for.

Every refusal is an ``AdapterError`` naming the field at fault (``lora_path``,
``r``, ``target_modules``, a tensor name...), which the server turns into a 400.
Supported: plain LoRA on the decoder's linears (q/k/v/o, gate/up/down), with
``lora_alpha / r`` scaling or rsLoRA's ``lora_alpha / sqrt(r)``. Refused rather
than served wrong: DoRA, per-module rank/alpha patterns, trained biases,
``modules_to_save``, ``fan_in_fan_out`` and targets outside the decoder layers
(lm_head, embeddings).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch

from runtimes.lora_config import (CONFIG, FUSED, MODULES, WEIGHTS, AdapterError, check_shapes,  # noqa: F401
                                  module_dims, read_config, scale_of)


@dataclass(frozen=True)
class Shapes:
    """(in, out) of each targetable module, and the layer count: what an adapter must fit."""

    num_layers: int
    dims: Mapping[str, tuple[int, int]]

    @classmethod
    def of(cls, cfg: Any) -> "Shapes":
        return cls(cfg.num_layers, module_dims(cfg.hidden_size, cfg.intermediate_size, cfg.num_heads,
                                               cfg.num_kv_heads, cfg.head_dim))


@dataclass(frozen=True)
class Adapter:
    """One adapter in memory (CPU, fp32): ``weights[(layer, module)] = (A [r, in], B [out, r])``
    with the scale already folded into B."""

    name: str
    path: str
    rank: int
    scale: float
    target_modules: tuple[str, ...]
    weights: Mapping[tuple[int, str], tuple[torch.Tensor, torch.Tensor]]
    uid: int = 0  # set per load by the manager: keys the slots and the prefix cache

    @property
    def nbytes(self) -> int:
        return sum(a.numel() * 4 + b.numel() * 4 for a, b in self.weights.values())


def load_adapter(name: str, path: str | Path, shapes: Shapes) -> Adapter:
    """Read and check an adapter directory; tensors end up fp32 on the CPU."""
    from safetensors.torch import load_file

    directory = Path(path)
    if not directory.is_dir():
        raise AdapterError("lora_path", f"{path}: no such adapter directory")
    cfg = read_config(directory)
    file = directory / WEIGHTS
    if not file.is_file():
        raise AdapterError("lora_path", f"{directory} has no {WEIGHTS} (only safetensors adapters are loaded)")
    try:
        tensors = load_file(str(file))
    except Exception as e:  # safetensors raises its own error types: any failure is a bad file
        raise AdapterError("lora_path", f"{file} is not a readable safetensors file: {e}") from None
    r, scale = cfg["r"], scale_of(cfg)
    pairs = check_shapes({k: list(t.shape) for k, t in tensors.items()}, r, shapes.dims, shapes.num_layers)
    weights = {}
    for (layer, module), keys in sorted(pairs.items()):
        a, b = tensors[keys["A"]], tensors[keys["B"]]
        for key, t in ((keys["A"], a), (keys["B"], b)):
            if not t.is_floating_point() or not bool(torch.isfinite(t).all()):
                raise AdapterError(key, f"tensor {key} must hold finite floating-point values")
        weights[(layer, module)] = (a.float().contiguous(), (b.float() * scale).contiguous())
    targets = tuple(m for m in MODULES if any(mod == m for _, mod in weights))
    return Adapter(name, str(directory), r, scale, targets, weights)
