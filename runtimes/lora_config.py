"""What a PEFT LoRA adapter directory must say to be served: ``adapter_config.json`` read and
checked, one rule for the packager (manifests, planner) and the fallback runtime.

Standard library only (the CLI reads it; the runtime adds the tensors in
``runtimes/fallback/lora/adapter.py``). Every refusal is an ``AdapterError`` naming the
field at fault, which the server turns into a 400 and the CLI into exit 2.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any, Mapping

CONFIG = "adapter_config.json"
WEIGHTS = "adapter_model.safetensors"
# The decoder's linears by PEFT's (HF's) module names; model.py fuses them in these groups
# (q|k|v -> qkv, gate|up -> gate_up), in this order along the output.
MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
FUSED = {"qkv": ("q_proj", "k_proj", "v_proj"), "o": ("o_proj",), "gate_up": ("gate_proj", "up_proj"),
         "down": ("down_proj",)}
MAX_RANK = 512  # vLLM's largest --max-lora-rank


class AdapterError(ValueError):
    """A bad adapter; ``field`` names what to fix (the 400's ``param``)."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


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


_KEY = re.compile(r"(?:^|\.)layers\.(\d+)\.(?:self_attn|mlp)\.(\w+)\.lora_([AB])(?:\.default)?\.weight$")


def module_dims(hidden: int, intermediate: int, heads: int, kv_heads: int, head_dim: int) -> dict[str, tuple[int, int]]:
    """(in, out) of each adaptable linear of a Llama-style decoder layer."""
    q, kv = heads * head_dim, kv_heads * head_dim
    return {"q_proj": (hidden, q), "k_proj": (hidden, kv), "v_proj": (hidden, kv), "o_proj": (q, hidden),
            "gate_proj": (hidden, intermediate), "up_proj": (hidden, intermediate), "down_proj": (intermediate, hidden)}


def check_shapes(shapes: Mapping[str, list[int]], r: int, dims: Mapping[str, tuple[int, int]],
                 num_layers: int) -> dict[tuple[int, str], dict[str, str]]:
    """Every tensor a LoRA A [r, in] or B [out, r] of a layer the model has; returns
    (layer, module) -> {"A": key, "B": key}, each pair complete."""
    pairs: dict[tuple[int, str], dict[str, str]] = {}
    for key, shape in shapes.items():
        m = _KEY.search(key)
        if m is None:
            raise AdapterError(key, f"tensor {key} is not a LoRA weight of a decoder layer's linear "
                                    f"({', '.join(MODULES)}); lm_head and embedding adapters are not supported")
        layer, module, ab = int(m.group(1)), m.group(2), m.group(3)
        if module not in dims:
            raise AdapterError("target_modules", f"tensor {key}: module {module} is not one of {', '.join(MODULES)}")
        if layer >= num_layers:
            raise AdapterError(key, f"tensor {key}: layer {layer} but the model has {num_layers} layers")
        d_in, d_out = dims[module]
        want = [r, d_in] if ab == "A" else [d_out, r]
        if list(shape) != want:
            raise AdapterError(key, f"tensor {key} has shape {list(shape)}; the model and r={r} need {want}")
        pairs.setdefault((layer, module), {})[ab] = key
    for (layer, module), ab in pairs.items():
        if set(ab) != {"A", "B"}:
            raise AdapterError(module, f"layer {layer} {module} has no {'lora_B' if 'A' in ab else 'lora_A'} weight")
    if not pairs:
        raise AdapterError("lora_path", "the adapter holds no LoRA weights")
    return pairs


def adapted_modules(shapes: Mapping[str, list[int]], r: int) -> list[str]:
    """The modules an adapter's tensors adapt (in MODULES order), read without the base model: every
    tensor a LoRA A [r, in] or B [out, r] of a decoder layer's linear, in complete pairs."""
    pairs: dict[tuple[int, str], set[str]] = {}
    for key, shape in shapes.items():
        m = _KEY.search(key)
        if m is None or m.group(2) not in MODULES:
            raise AdapterError(key, f"tensor {key} is not a LoRA weight of a decoder layer's linear "
                                    f"({', '.join(MODULES)})")
        rank = shape[0] if m.group(3) == "A" else shape[-1]
        if len(shape) != 2 or rank != r:
            raise AdapterError(key, f"tensor {key} has shape {list(shape)}, not rank r={r}")
        pairs.setdefault((int(m.group(1)), m.group(2)), set()).add(m.group(3))
    if not pairs:
        raise AdapterError("lora_path", "the adapter holds no LoRA weights")
    for (layer, module), ab in pairs.items():
        if ab != {"A", "B"}:
            raise AdapterError(module, f"layer {layer} {module} has no {'lora_B' if 'A' in ab else 'lora_A'} weight")
    return [m for m in MODULES if any(mod == m for _, mod in pairs)]


def safetensors_shapes(path: Path) -> dict[str, list[int]]:
    """Tensor name -> shape from a safetensors file's header (8-byte length, then JSON)."""
    try:
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            if not 2 <= n <= 100 << 20:
                raise ValueError(f"header length {n}")
            header = json.loads(f.read(n))
        return {k: list(v["shape"]) for k, v in header.items() if k != "__metadata__"}
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise AdapterError("lora_path", f"{path} is not a readable safetensors file: {e}") from None
