"""Attention over the per-slot KV cache for a mixed batch: store the new K/V,
then decode rows through the kernel table and prefill chunks through SDPA."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .batch import ForwardBatch
from .kernels import Ops


def attention(
    batch: ForwardBatch,
    q: torch.Tensor,  # [T, Hq, D]
    k: torch.Tensor,  # [T, Hkv, D]
    v: torch.Tensor,
    k_cache: torch.Tensor,  # [num_slots, Hkv, max_len, D]
    v_cache: torch.Tensor,
    scale: float,
    ops: Ops,
) -> torch.Tensor:
    out = torch.empty_like(q)  # every row is a decode row or in a prefill segment
    b = batch.num_decode
    if b:
        pos = batch.positions[:b]  # a view: decode rows come first and sit at their sequence's last position
        k_cache[batch.decode_slots, :, pos] = k[:b]
        v_cache[batch.decode_slots, :, pos] = v[:b]
        if batch.row_groups is None:
            n = max(batch.decode_len_list)
            out[:b] = ops.decode_attention(q[:b], k_cache, v_cache, batch.decode_slots, batch.decode_seq_lens, scale, n)
        else:  # batch-invariant: each sequence alone, as it would run by itself
            for i, n in enumerate(batch.decode_len_list):
                r = slice(i, i + 1)
                out[r] = ops.decode_attention(q[r], k_cache, v_cache, batch.decode_slots[r], batch.decode_seq_lens[r], scale, n)
    for seg in batch.prefill:
        rows = slice(seg.row, seg.row + seg.length)
        end = seg.start + seg.length
        k_cache[seg.slot, :, seg.start : end] = k[rows].transpose(0, 1)
        v_cache[seg.slot, :, seg.start : end] = v[rows].transpose(0, 1)
        qs = q[rows].transpose(0, 1).unsqueeze(0)  # [1, Hq, L, D]
        ks = k_cache[seg.slot : seg.slot + 1, :, :end]  # [1, Hkv, end, D]
        vs = v_cache[seg.slot : seg.slot + 1, :, :end]
        if seg.start == 0:
            o = F.scaled_dot_product_attention(qs, ks, vs, is_causal=True, scale=scale, enable_gqa=True)
        else:
            # A later chunk sees the cached prefix plus its own causal part.
            qpos = torch.arange(seg.start, end, device=q.device).view(-1, 1)
            mask = torch.arange(end, device=q.device).view(1, -1) <= qpos
            o = F.scaled_dot_product_attention(qs, ks, vs, attn_mask=mask, scale=scale, enable_gqa=True)
        out[rows] = o[0].transpose(0, 1)
    return out
