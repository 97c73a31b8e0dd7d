"""Turn a per-sequence KV layout into the paged one the kernels read, with
the blocks scattered so that a kernel ignoring the block table fails."""

from __future__ import annotations

import torch


def to_paged(cache: torch.Tensor, block_size: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """cache [S, Hkv, L, D] -> (paged [S * nb + 1, block_size, Hkv, D], tables [S, nb]).
    Block 0 is left as garbage nobody owns."""
    s, hkv, length, d = cache.shape
    nb = -(-length // block_size)
    padded = torch.zeros(s, hkv, nb * block_size, d, dtype=cache.dtype)
    padded[:, :, :length] = cache
    blocks = padded.view(s, hkv, nb, block_size, d).permute(0, 2, 3, 1, 4).reshape(s * nb, block_size, hkv, d)
    order = torch.randperm(s * nb, generator=g) + 1
    paged = torch.full((s * nb + 1, block_size, hkv, d), float("nan"), dtype=cache.dtype)
    paged[order] = blocks
    return paged, order.view(s, nb)
