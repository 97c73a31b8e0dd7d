"""Paged KV cache: ``num_blocks`` blocks of ``block_size`` positions per layer.

Layout per layer: k and v of [num_blocks, block_size, Hkv, D] (vLLM's). A
token's K/V live at flat position ``block * block_size + offset``; the runner
hands attention a ``slot_mapping`` of those positions for the rows it writes
and block tables for the prefixes it reads. Which blocks belong to whom is
``block_manager.py``'s business (no torch there).
"""

from __future__ import annotations

import torch

from .config import ModelConfig


class KVCache:
    def __init__(self, cfg: ModelConfig, num_blocks: int, block_size: int, dtype: torch.dtype, device: str = "cpu"):
        shape = (cfg.num_layers, num_blocks, block_size, cfg.num_kv_heads, cfg.head_dim)
        # Zeros, not empty, and blocks are zeroed again when handed out
        # (``zero_blocks``): kernels read (masked) past a sequence's length,
        # and 0 * NaN from garbage would poison them.
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)
        self.num_blocks = num_blocks
        self.block_size = block_size

    @staticmethod
    def bytes_needed(cfg: ModelConfig, num_blocks: int, block_size: int, dtype: torch.dtype) -> int:
        elem = torch.empty((), dtype=dtype).element_size()
        return 2 * cfg.num_layers * num_blocks * block_size * cfg.num_kv_heads * cfg.head_dim * elem

    def layer(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.k[i], self.v[i]

    def zero_blocks(self, blocks: list[int]) -> None:
        """Clear ``blocks`` in every layer (the block manager's freshly handed-out ones)."""
        if blocks:
            ids = torch.tensor(blocks, dtype=torch.long, device=self.k.device)
            self.k.index_fill_(1, ids, 0.0)
            self.v.index_fill_(1, ids, 0.0)
