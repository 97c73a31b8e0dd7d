"""Per-slot contiguous KV cache: one slot per running sequence.

Layout per layer: k and v of [num_slots, Hkv, max_len, D]; the engine writes a
token's K/V at [slot, :, pos]. Slot bookkeeping lives in ``slots.py`` (no
torch) so the scheduler can be tested without tensors.
"""

from __future__ import annotations

import torch

from .config import ModelConfig


class KVCache:
    def __init__(self, cfg: ModelConfig, num_slots: int, max_len: int, dtype: torch.dtype, device: str = "cpu"):
        shape = (cfg.num_layers, num_slots, cfg.num_kv_heads, max_len, cfg.head_dim)
        # Zeros, not empty: attention kernels may read (masked) past a
        # sequence's length, and 0 * NaN from garbage would poison them.
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)
        self.num_slots = num_slots
        self.max_len = max_len

    @staticmethod
    def bytes_needed(cfg: ModelConfig, num_slots: int, max_len: int, dtype: torch.dtype) -> int:
        elem = torch.empty((), dtype=dtype).element_size()
        return 2 * cfg.num_layers * num_slots * cfg.num_kv_heads * max_len * cfg.head_dim * elem

    def layer(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.k[i], self.v[i]
