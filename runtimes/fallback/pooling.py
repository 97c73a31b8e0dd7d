"""Pooling: token states of a packed batch -> one vector per sequence, as the model's
sentence-transformers config says (`modules.json`, `1_Pooling/config.json`).

Mean (over the sequence's own tokens: a packed batch has no padding to mask), CLS (first
token) or last token; L2-normalised when the model lists a Normalize module. A directory with
no sentence-transformers config pools by mean and normalises, as vLLM's embed default does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from runtimes import st_config


@dataclass(frozen=True)
class PoolingConfig:
    mode: str = "mean"
    normalize: bool = True

    @classmethod
    def from_dir(cls, directory: str | Path) -> "PoolingConfig":
        try:
            mode, normalize = st_config.pooling(st_config.reader(directory))
        except ValueError as e:
            raise ValueError(f"{directory}: {e}") from None
        return cls(mode, normalize)


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
