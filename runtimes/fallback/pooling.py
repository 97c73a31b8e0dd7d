"""Pooling: token states of a packed batch -> one vector per sequence, as the model's
sentence-transformers config says (`modules.json`, `1_Pooling/config.json`).

Mean (over the sequence's own tokens: a packed batch has no padding to mask), CLS (first
token) or last token; L2-normalised when the model lists a Normalize module. A directory with
no sentence-transformers config pools by mean and normalises, as vLLM's embed default does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

MODES = ("mean", "cls", "last")
_ST_KEYS = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls", "pooling_mode_lasttoken": "last"}


@dataclass(frozen=True)
class PoolingConfig:
    mode: str = "mean"
    normalize: bool = True

    @classmethod
    def from_dir(cls, directory: str | Path) -> "PoolingConfig":
        d = Path(directory)
        modules = _json(d / "modules.json")
        if not isinstance(modules, list):
            return cls()
        types = {str(m.get("type", "")).rsplit(".", 1)[-1]: m for m in modules if isinstance(m, dict)}
        mode = "mean"
        if "Pooling" in types:
            cfg = _json(d / types["Pooling"].get("path", "1_Pooling") / "config.json") or {}
            on = [mine for key, mine in _ST_KEYS.items() if cfg.get(key)]
            others = [k for k, v in cfg.items() if k.startswith("pooling_mode_") and v and k not in _ST_KEYS]
            if others or len(on) > 1:
                raise ValueError(f"{d}: pooling {others or on} is not supported (one of mean, cls, last)")
            mode = on[0] if on else "mean"
        return cls(mode=mode, normalize="Normalize" in types)


def _json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def pool(hidden: torch.Tensor, lengths: list[int], cfg: PoolingConfig) -> torch.Tensor:
    """hidden [total_tokens, H] of sequences laid end to end -> [len(lengths), H]."""
    starts = torch.tensor([0, *lengths[:-1]], device=hidden.device).cumsum(0)
    if cfg.mode == "cls":
        out = hidden[starts]
    elif cfg.mode == "last":
        out = hidden[starts + torch.tensor(lengths, device=hidden.device) - 1]
    else:
        seq = torch.repeat_interleave(torch.arange(len(lengths), device=hidden.device),
                                      torch.tensor(lengths, device=hidden.device))
        sums = hidden.new_zeros(len(lengths), hidden.shape[1]).index_add_(0, seq, hidden)
        out = sums / torch.tensor(lengths, dtype=hidden.dtype, device=hidden.device).unsqueeze(1)
    return F.normalize(out, p=2, dim=-1) if cfg.normalize else out
