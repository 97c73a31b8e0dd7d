"""Torch reference ops: the specification of every kernel, and the CPU path.

Each function here defines what an op means; the Triton versions in
``triton_ops.py`` must match these under ``TRITON_INTERPRET=1`` and on a GPU.
On CPU these are what runs in production, so they are written to be fast with
plain torch (batched gathers and matmuls, no Python loops over the batch).

Precision contract: every op computes in fp32 and casts the result back to the
input dtype, so fp16/bf16 models get fp32 reductions and softmax.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import torch
import torch.nn.functional as F

_FUSED_RMS_NORM = hasattr(F, "rms_norm")


def rms_norm(
    x: torch.Tensor,
    weight: torch.Tensor,
    eps: float,
    residual: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fused (residual add +) RMSNorm.

    h = x + residual (or x), y = h * rsqrt(mean(h^2, -1) + eps) * weight.
    Returns (y, h), both in h's dtype (x's, or the promoted one where a bf16
    matmul output meets an fp32 residual) and x's shape. h is what the caller
    keeps as the new residual stream, rounded to that dtype like an unfused model.
    """
    if residual is not None:
        h = x + residual
    else:
        h = x
    if h.dtype == torch.float32 and _FUSED_RMS_NORM:
        return F.rms_norm(h, h.shape[-1:], weight, eps), h  # one kernel, the same fp32 math
    hf = h.float()
    var = hf.pow(2).mean(-1, keepdim=True)
    y = hf * torch.rsqrt(var + eps) * weight.float()
    return y.to(h.dtype), h


def silu_and_mul(x: torch.Tensor) -> torch.Tensor:
    """x [..., 2*I] -> silu(x[..., :I]) * x[..., I:] (gate first, as in a merged gate_up)."""
    i = x.shape[-1] // 2
    if x.dtype == torch.float32:
        return F.silu(x[..., :i]) * x[..., i:]
    xf = x.float()
    return (F.silu(xf[..., :i]) * xf[..., i:]).to(x.dtype)


def rotary(
    q: torch.Tensor,
    k: torch.Tensor,
    positions: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Neox/HF-Llama rotate_half rotary embedding. Out-of-place: returns new q, k.

    q [T, Hq, D], k [T, Hkv, D], positions [T] int64, cos/sin [max_pos, D//2] fp32.
    For halves x = [x1, x2]: out = [x1*c - x2*s, x2*c + x1*s].
    """
    c = cos.index_select(0, positions).unsqueeze(1)  # [T, 1, D/2]
    s = sin.index_select(0, positions).unsqueeze(1)
    return _rotate(q, c, s), _rotate(k, c, s)


def rope_rows(positions: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """This step's cos/sin rows [T, 1, D/2], gathered once for every layer (``rotate``)."""
    return cos.index_select(0, positions).unsqueeze(1), sin.index_select(0, positions).unsqueeze(1)


def rotate(x: torch.Tensor, rows: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """``rotary`` on q and k heads side by side ([T, Hq + Hkv, D], a view of the
    fused qkv output) with ``rope_rows``: one chain of ops instead of two."""
    return _rotate(x, *rows)


def _rotate(x: torch.Tensor, c: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    xf = x.float()
    x1, x2 = xf[..., :half], xf[..., half:]
    return torch.cat((x1 * c - x2 * s, x2 * c + x1 * s), dim=-1).to(x.dtype)


def decode_attention(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    block_tables: torch.Tensor,
    seq_lens: torch.Tensor,
    scale: float,
    max_seq_len: int | None = None,
) -> torch.Tensor:
    """One-token-per-sequence attention over a paged KV cache, with GQA.

    q [B, Hq, D]; k_cache/v_cache [num_blocks, block_size, Hkv, D];
    block_tables [B, max_blocks] int64: sequence b's position p lives in block
    ``block_tables[b, p // block_size]`` at offset ``p % block_size``;
    seq_lens [B] = valid positions (current token included, >= 1).
    Query head h reads kv head h // (Hq // Hkv), as HF's repeat_kv does.
    Softmax in fp32; returns [B, Hq, D] in q.dtype.
    Positions past a sequence's length that its table reaches must hold finite
    values (the runtime zeros blocks when it hands them out, and pads tables
    with a sequence's own blocks): they get zero weight, and 0 * finite is 0.
    ``max_seq_len`` (optional) is max(seq_lens) if the caller already knows it
    (must be >= it); passing it avoids a device->host sync, so on a GPU the op
    then has none and can be captured in a CUDA graph.
    """
    b, hq, d = q.shape
    num_blocks, bs, hkv, _ = k_cache.shape
    if max_seq_len is None:
        max_seq_len = int(seq_lens.max().item())
    n = min(int(max_seq_len), block_tables.shape[1] * bs)
    nb = -(-n // bs)
    k = v = None
    if b == 1 and q.device.type == "cpu":  # .tolist() is free on CPU, a sync on GPU
        ids = block_tables[0, :nb].tolist()
        if ids == list(range(ids[0], ids[0] + nb)):
            # Consecutive blocks (the block manager hands them out so): a view, no copy.
            k = k_cache[ids[0] : ids[0] + nb].view(1, nb * bs, hkv, d)
            v = v_cache[ids[0] : ids[0] + nb].view(1, nb * bs, hkv, d)
    if k is None:
        # One gather of every sequence's used blocks as whole rows: index_select copies a block with one
        # memcpy, 3.6x faster here than advanced indexing (k_cache[t]) on the same blocks.
        t = block_tables[:, :nb].reshape(-1)
        k = k_cache.view(num_blocks, -1).index_select(0, t).view(b, nb * bs, hkv, d)
        v = v_cache.view(num_blocks, -1).index_select(0, t).view(b, nb * bs, hkv, d)
    # [B, Hkv, n, D] as strided views: SDPA reads them in place, and its GQA maps query head h to
    # kv head h // (Hq // Hkv) without repeating K/V (1.3-1.5x the bmm formulations it replaced here).
    k, v = k[:, :n].transpose(1, 2).float(), v[:, :n].transpose(1, 2).float()  # .float(): no-op on fp32
    mask = None
    if not (n == int(seq_lens[0]) and b == 1):  # a lone sequence at full length needs no mask
        mask = (torch.arange(n, device=q.device).view(1, n) < seq_lens.view(b, 1)).view(b, 1, 1, n)
    out = F.scaled_dot_product_attention(q.float().view(b, hq, 1, d), k, v, attn_mask=mask, scale=scale,
                                         enable_gqa=True)
    return out.view(b, hq, d).to(q.dtype)


def rope_tables(
    head_dim: int,
    max_pos: int,
    theta: float = 10000.0,
    scaling: Mapping[str, Any] | None = None,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables [max_pos, head_dim // 2] fp32 for the rotate_half convention.

    ``scaling`` is an HF ``rope_scaling`` dict; supported types: None/"default",
    "linear" (positions divided by factor) and "llama3" (Llama-3.1 frequency
    remapping). Computed in fp64 and rounded once to fp32, so large positions
    keep their phase accuracy.
    """
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))
    rope_type = None
    if scaling:
        rope_type = scaling.get("rope_type", scaling.get("type"))
    if rope_type in (None, "default"):
        pass
    elif rope_type == "linear":
        inv_freq = inv_freq / float(scaling["factor"])
    elif rope_type == "llama3":
        inv_freq = _llama3_inv_freq(inv_freq, scaling)
    else:
        raise ValueError(f"unsupported rope_scaling type: {rope_type!r}")
    pos = torch.arange(max_pos, dtype=torch.float64)
    freqs = torch.outer(pos, inv_freq)
    cos = freqs.cos().to(torch.float32)
    sin = freqs.sin().to(torch.float32)
    if device is not None:
        cos, sin = cos.to(device), sin.to(device)
    return cos, sin


def _llama3_inv_freq(inv_freq: torch.Tensor, scaling: Mapping[str, Any]) -> torch.Tensor:
    """Llama-3.1 rope scaling: long wavelengths slowed by ``factor``, short ones
    kept, and a smooth blend between the two wavelength bounds."""
    factor = float(scaling["factor"])
    low = float(scaling.get("low_freq_factor", 1.0))
    high = float(scaling.get("high_freq_factor", 4.0))
    old_ctx = float(scaling.get("original_max_position_embeddings", 8192))
    low_wavelen = old_ctx / low
    high_wavelen = old_ctx / high
    wavelen = 2 * math.pi / inv_freq
    out = torch.where(wavelen > low_wavelen, inv_freq / factor, inv_freq)
    smooth = (old_ctx / wavelen - low) / (high - low)
    blended = (1 - smooth) * out / factor + smooth * out
    medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
    return torch.where(medium, blended, out)
