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

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch

CONFIG = "adapter_config.json"
WEIGHTS = "adapter_model.safetensors"
# The decoder's linears by PEFT's (HF's) module names; model.py fuses them in these groups
# (q|k|v -> qkv, gate|up -> gate_up), in this order along the output.
MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
FUSED = {"qkv": ("q_proj", "k_proj", "v_proj"), "o": ("o_proj",), "gate_up": ("gate_proj", "up_proj"),
         "down": ("down_proj",)}
_KEY = re.compile(r"(?:^|\.)layers\.(\d+)\.(?:self_attn|mlp)\.(\w+)\.lora_([AB])(?:\.default)?\.weight$")
MAX_RANK = 512  # vLLM's largest --max-lora-rank


class AdapterError(ValueError):
    """A bad adapter; ``field`` names what to fix (the 400's ``param``)."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Shapes:
    """(in, out) of each targetable module, and the layer count: what an adapter must fit."""

    num_layers: int
    dims: Mapping[str, tuple[int, int]]

    @classmethod
    def of(cls, cfg: Any) -> "Shapes":
        h, i = cfg.hidden_size, cfg.intermediate_size
        q, kv = cfg.num_heads * cfg.head_dim, cfg.num_kv_heads * cfg.head_dim
        dims = {"q_proj": (h, q), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (q, h),
                "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}
        return cls(cfg.num_layers, dims)


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


def read_config(directory: Path) -> dict:
    """``adapter_config.json`` as a dict, checked for what this runtime supports."""
    try:
        cfg = json.loads((directory / CONFIG).read_text())
    except FileNotFoundError:
        raise AdapterError("lora_path", f"{directory} has no {CONFIG}: not a PEFT adapter directory") from None
    except (OSError, ValueError) as e:
        raise AdapterError("lora_path", f"{directory / CONFIG} is not readable JSON: {e}") from None
    if not isinstance(cfg, dict):
        raise AdapterError("lora_path", f"{directory / CONFIG} must hold a JSON object")
    if str(cfg.get("peft_type", "LORA")).upper() != "LORA":
        raise AdapterError("peft_type", f"peft_type {cfg.get('peft_type')!r} is not LORA")
    r = cfg.get("r")
    if not isinstance(r, int) or isinstance(r, bool) or not 1 <= r <= MAX_RANK:
        raise AdapterError("r", f"r must be an integer in 1..{MAX_RANK}, not {r!r}")
    alpha = cfg.get("lora_alpha", r)
    if not isinstance(alpha, (int, float)) or isinstance(alpha, bool) or not math.isfinite(alpha):
        raise AdapterError("lora_alpha", f"lora_alpha must be a number, not {alpha!r}")
    for key, bad in (("use_dora", True), ("fan_in_fan_out", True)):
        if cfg.get(key) == bad:
            raise AdapterError(key, f"{key}: true is not supported by this runtime")
    for key in ("rank_pattern", "alpha_pattern", "modules_to_save", "layers_to_transform"):
        if cfg.get(key):
            raise AdapterError(key, f"{key} is not supported by this runtime; train without it")
    if cfg.get("bias", "none") != "none":
        raise AdapterError("bias", f"bias {cfg.get('bias')!r}: only 'none' is supported")
    targets = cfg.get("target_modules")
    if isinstance(targets, str):  # PEFT allows a regex; the tensors say which modules it hit
        targets = None
    if targets is not None:
        if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
            raise AdapterError("target_modules", "target_modules must be a list of module names")
        bad = sorted({t.rsplit(".", 1)[-1] for t in targets} - set(MODULES))
        if bad:
            raise AdapterError("target_modules", f"target_modules {bad} are not supported; "
                                                 f"this runtime adapts {', '.join(MODULES)}")
    return cfg


def scale_of(cfg: Mapping[str, Any]) -> float:
    r, alpha = cfg["r"], cfg.get("lora_alpha", cfg["r"])
    return float(alpha) / (math.sqrt(r) if cfg.get("use_rslora") else r)


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
    pairs: dict[tuple[int, str], dict[str, torch.Tensor]] = {}
    for key, t in tensors.items():
        m = _KEY.search(key)
        if m is None:
            raise AdapterError(key, f"tensor {key} is not a LoRA weight of a decoder layer's linear "
                                    f"({', '.join(MODULES)}); lm_head and embedding adapters are not supported")
        layer, module, ab = int(m.group(1)), m.group(2), m.group(3)
        if module not in shapes.dims:
            raise AdapterError("target_modules", f"tensor {key}: module {module} is not one of {', '.join(MODULES)}")
        if layer >= shapes.num_layers:
            raise AdapterError(key, f"tensor {key}: layer {layer} but the model has {shapes.num_layers} layers")
        d_in, d_out = shapes.dims[module]
        want = (r, d_in) if ab == "A" else (d_out, r)
        if tuple(t.shape) != want:
            raise AdapterError(key, f"tensor {key} has shape {list(t.shape)}; the model and r={r} need {list(want)}")
        if not t.is_floating_point() or not bool(torch.isfinite(t).all()):
            raise AdapterError(key, f"tensor {key} must hold finite floating-point values")
        pairs.setdefault((layer, module), {})[ab] = t.float()
    weights = {}
    for (layer, module), ab in sorted(pairs.items()):
        if set(ab) != {"A", "B"}:
            missing = "lora_B" if "A" in ab else "lora_A"
            raise AdapterError(module, f"layer {layer} {module} has no {missing} weight")
        weights[(layer, module)] = (ab["A"].contiguous(), (ab["B"] * scale).contiguous())
    if not weights:
        raise AdapterError("lora_path", f"{file} holds no LoRA weights")
    targets = tuple(m for m in MODULES if any(mod == m for _, mod in weights))
    return Adapter(name, str(directory), r, scale, targets, weights)
