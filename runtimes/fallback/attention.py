"""Attention over the paged KV cache for a mixed batch: store the new K/V at
their slots, then decode rows through the kernel table (block tables) and
prefill chunks through SDPA."""

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
    k_cache: torch.Tensor,  # [num_blocks, block_size, Hkv, D]
    v_cache: torch.Tensor,
    scale: float,
    ops: Ops,
) -> torch.Tensor:
    hkv, d = k_cache.shape[2], k_cache.shape[3]
    k_flat, v_flat = k_cache.view(-1, hkv, d), v_cache.view(-1, hkv, d)
    k_flat.index_copy_(0, batch.slot_mapping, k)
    v_flat.index_copy_(0, batch.slot_mapping, v)
    b = batch.num_decode
    if not batch.prefill and batch.row_groups is None:  # a pure decode step: the kernel's output as it is
        tables, lens = batch.decode_block_tables, batch.decode_seq_lens
        return ops.decode_attention(q, k_cache, v_cache, tables, lens, scale, max(batch.decode_len_list))
    out = torch.empty_like(q)  # every row is a decode row or in a prefill segment
    if b:
        tables, lens = batch.decode_block_tables, batch.decode_seq_lens
        if batch.row_groups is None:
            out[:b] = ops.decode_attention(q[:b], k_cache, v_cache, tables, lens, scale, max(batch.decode_len_list))
        else:  # batch-invariant: each sequence alone, as it would run by itself
            for i, n in enumerate(batch.decode_len_list):
                r = slice(i, i + 1)
                out[r] = ops.decode_attention(q[r], k_cache, v_cache, tables[r], lens[r], scale, n)
    for seg in batch.prefill:
        rows = slice(seg.row, seg.row + seg.length)
        qs = q[rows].transpose(0, 1).unsqueeze(0)  # [1, Hq, L, D]
        if seg.context_slots is None:
            ks = k[rows].transpose(0, 1).unsqueeze(0)  # [1, Hkv, L, D]
            vs = v[rows].transpose(0, 1).unsqueeze(0)
            o = F.scaled_dot_product_attention(qs, ks, vs, is_causal=True, scale=scale, enable_gqa=True)
        else:
            # A later chunk (or one after a cached prefix) sees the cached
            # context plus its own causal part.
            end = seg.start + seg.length
            ks = k_flat.index_select(0, seg.context_slots).transpose(0, 1).unsqueeze(0)  # [1, Hkv, end, D]
            vs = v_flat.index_select(0, seg.context_slots).transpose(0, 1).unsqueeze(0)
            qpos = torch.arange(seg.start, end, device=q.device).view(-1, 1)
            mask = torch.arange(end, device=q.device).view(1, -1) <= qpos
            o = F.scaled_dot_product_attention(qs, ks, vs, attn_mask=mask, scale=scale, enable_gqa=True)
        out[rows] = o[0].transpose(0, 1)
    return out
