"""Triton kernels for the fallback runtime, one per op, plus launch wrappers.

Each wrapper has the signature and meaning of its twin in ``reference.py`` and
is tested against it under ``TRITON_INTERPRET=1`` (CPU) and on GPUs by
``bench/gpu/kernels_and_decode.py``. Block sizes are powers of two from
``triton.next_power_of_2``; masks cover the rest, so hidden 576 or head_dim 80
and 96 work. Every kernel accumulates in fp32 and stores in the input dtype.

Importing this module imports triton; ``kernels/__init__.py`` only does so when
the Triton table is selected.
"""

from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl

# ---------------------------------------------------------------------------
# RMSNorm (+ fused residual add)
# ---------------------------------------------------------------------------


@triton.jit
def _rms_norm_kernel(
    x_ptr, r_ptr, w_ptr, y_ptr, h_ptr,
    x_stride, r_stride, y_stride, h_stride,
    n_cols, eps,
    HAS_RESIDUAL: tl.constexpr, BLOCK: tl.constexpr,
):
    # One program per row; the whole row fits one block (hidden <= 16k).
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK)
    mask = cols < n_cols
    h = tl.load(x_ptr + row * x_stride + cols, mask=mask, other=0.0)
    if HAS_RESIDUAL:
        r = tl.load(r_ptr + row * r_stride + cols, mask=mask, other=0.0)
        # Added in the storage dtype, as the unfused model rounds the residual.
        h = (h + r).to(h_ptr.dtype.element_ty)
        tl.store(h_ptr + row * h_stride + cols, h, mask=mask)
    hf = h.to(tl.float32)
    var = tl.sum(hf * hf, axis=0) / n_cols
    rstd = 1.0 / tl.sqrt(var + eps)
    w = tl.load(w_ptr + cols, mask=mask, other=0.0).to(tl.float32)
    y = hf * rstd * w
    tl.store(y_ptr + row * y_stride + cols, y.to(y_ptr.dtype.element_ty), mask=mask)


def _rows(t: torch.Tensor, n: int) -> torch.Tensor:
    t2 = t.reshape(-1, n)
    return t2 if t2.stride(-1) == 1 else t2.contiguous()


def _warps(block: int) -> int:
    # ~256 elements per warp keeps registers low without idling lanes.
    return max(1, min(16, block // 256))


def rms_norm(x, weight, eps, residual=None):
    shape = x.shape
    n = shape[-1]
    x2 = _rows(x, n)
    rows = x2.shape[0]
    y = torch.empty((rows, n), dtype=x.dtype, device=x.device)
    if residual is not None:
        r2 = _rows(residual, n)
        h2 = torch.empty((rows, n), dtype=x.dtype, device=x.device)
    else:
        r2, h2 = x2, x2  # unused by the kernel
    block = triton.next_power_of_2(n)
    _rms_norm_kernel[(rows,)](
        x2, r2, weight, y, h2,
        x2.stride(0), r2.stride(0), y.stride(0), h2.stride(0),
        n, float(eps),
        HAS_RESIDUAL=residual is not None, BLOCK=block, num_warps=_warps(block),
    )
    return y.view(shape), (h2.view(shape) if residual is not None else x)


# ---------------------------------------------------------------------------
# SiLU(gate) * up
# ---------------------------------------------------------------------------


@triton.jit
def _silu_and_mul_kernel(x_ptr, y_ptr, x_stride, y_stride, n_cols, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = cols < n_cols
    a = tl.load(x_ptr + row * x_stride + cols, mask=mask, other=0.0).to(tl.float32)
    b = tl.load(x_ptr + row * x_stride + n_cols + cols, mask=mask, other=0.0).to(tl.float32)
    y = a * tl.sigmoid(a) * b
    tl.store(y_ptr + row * y_stride + cols, y.to(y_ptr.dtype.element_ty), mask=mask)


def silu_and_mul(x):
    two_i = x.shape[-1]
    i = two_i // 2
    x2 = _rows(x, two_i)
    rows = x2.shape[0]
    y = torch.empty((rows, i), dtype=x.dtype, device=x.device)
    block = min(1024, triton.next_power_of_2(i))
    _silu_and_mul_kernel[(rows, triton.cdiv(i, block))](
        x2, y, x2.stride(0), y.stride(0), i, BLOCK=block, num_warps=_warps(block),
    )
    return y.view(*x.shape[:-1], i)


# ---------------------------------------------------------------------------
# Rotary embedding (neox / HF rotate_half), q and k in one launch
# ---------------------------------------------------------------------------


@triton.jit
def _rotate_heads(src, dst, t, s_tok, s_head, d_tok, d_head, n_heads, c, s, half, dmask,
                  BLOCK_H: tl.constexpr, BLOCK_HALF: tl.constexpr):
    heads = tl.arange(0, BLOCK_H)
    d = tl.arange(0, BLOCK_HALF)
    m = (heads < n_heads)[:, None] & dmask[None, :]
    src_off = t * s_tok + heads[:, None] * s_head + d[None, :]
    x1 = tl.load(src + src_off, mask=m, other=0.0).to(tl.float32)
    x2 = tl.load(src + src_off + half, mask=m, other=0.0).to(tl.float32)
    o1 = x1 * c[None, :] - x2 * s[None, :]
    o2 = x2 * c[None, :] + x1 * s[None, :]
    dst_off = t * d_tok + heads[:, None] * d_head + d[None, :]
    tl.store(dst + dst_off, o1.to(dst.dtype.element_ty), mask=m)
    tl.store(dst + dst_off + half, o2.to(dst.dtype.element_ty), mask=m)


@triton.jit
def _rotary_kernel(
    q_ptr, k_ptr, qo_ptr, ko_ptr, pos_ptr, cos_ptr, sin_ptr,
    q_st, q_sh, k_st, k_sh, qo_st, qo_sh, ko_st, ko_sh, cs_stride,
    n_qh, n_kh, half,
    BLOCK_QH: tl.constexpr, BLOCK_KH: tl.constexpr, BLOCK_HALF: tl.constexpr,
):
    # One program per token: the cos/sin row is loaded once for all its heads.
    t = tl.program_id(0).to(tl.int64)
    pos = tl.load(pos_ptr + t).to(tl.int64)
    d = tl.arange(0, BLOCK_HALF)
    dmask = d < half
    c = tl.load(cos_ptr + pos * cs_stride + d, mask=dmask, other=0.0).to(tl.float32)
    s = tl.load(sin_ptr + pos * cs_stride + d, mask=dmask, other=0.0).to(tl.float32)
    _rotate_heads(q_ptr, qo_ptr, t, q_st, q_sh, qo_st, qo_sh, n_qh, c, s, half, dmask,
                  BLOCK_QH, BLOCK_HALF)
    _rotate_heads(k_ptr, ko_ptr, t, k_st, k_sh, ko_st, ko_sh, n_kh, c, s, half, dmask,
                  BLOCK_KH, BLOCK_HALF)


def _last_contig(t: torch.Tensor) -> torch.Tensor:
    return t if t.stride(-1) == 1 else t.contiguous()


def rotary(q, k, positions, cos, sin):
    """Out-of-place: returns new (q, k). q/k may be strided views (e.g. slices
    of a fused qkv projection) as long as the head_dim axis is contiguous."""
    q = _last_contig(q)
    k = _last_contig(k)
    cos = _last_contig(cos)
    sin = _last_contig(sin)
    assert cos.stride(0) == sin.stride(0)
    t, hq, d = q.shape
    hk = k.shape[1]
    half = d // 2
    qo = torch.empty((t, hq, d), dtype=q.dtype, device=q.device)
    ko = torch.empty((t, hk, d), dtype=k.dtype, device=k.device)
    if t == 0:
        return qo, ko
    block_half = triton.next_power_of_2(half)
    bq = triton.next_power_of_2(hq)
    _rotary_kernel[(t,)](
        q, k, qo, ko, positions, cos, sin,
        q.stride(0), q.stride(1), k.stride(0), k.stride(1),
        qo.stride(0), qo.stride(1), ko.stride(0), ko.stride(1), cos.stride(0),
        hq, hk, half,
        BLOCK_QH=bq, BLOCK_KH=triton.next_power_of_2(hk), BLOCK_HALF=block_half,
        num_warps=_warps(bq * block_half * 2),
    )
    return qo, ko


# ---------------------------------------------------------------------------
# Decode attention: flash-decoding over the paged cache, GQA-aware
# ---------------------------------------------------------------------------

_LOG2E = 1.4426950408889634


@triton.jit
def _decode_attn_kernel(
    q_ptr, k_ptr, v_ptr, bt_ptr, len_ptr,
    o_ptr, m_ptr, l_ptr, acc_ptr,
    scale_log2,
    q_sb, q_sh,
    bt_sb,
    k_sblk, k_sn, k_sh,
    v_sblk, v_sn, v_sh,
    o_sb, o_sh,
    p_sb, p_sh,
    a_sb, a_sh, a_ss,
    group, head_dim, split_len,
    BLOCK_G: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr,
    PAGE: tl.constexpr, SPLIT: tl.constexpr, PRECISION: tl.constexpr,
):
    # Program (b, kv head, split): all `group` query heads that share this kv
    # head are handled together, so each K/V tile is read once per group.
    b = tl.program_id(0).to(tl.int64)
    kvh = tl.program_id(1).to(tl.int64)
    sp = tl.program_id(2)
    seq_len = tl.load(len_ptr + b).to(tl.int32)
    start = sp * split_len
    end = tl.minimum(start + split_len, seq_len)

    g = tl.arange(0, BLOCK_G)
    d = tl.arange(0, BLOCK_D)
    gmask = g < group
    dmask = d < head_dim
    heads = kvh * group + g
    qmask = gmask[:, None] & dmask[None, :]
    q = tl.load(q_ptr + b * q_sb + heads[:, None] * q_sh + d[None, :], mask=qmask, other=0.0)

    m_i = tl.full([BLOCK_G], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_G], dtype=tl.float32)
    acc = tl.zeros([BLOCK_G, BLOCK_D], dtype=tl.float32)
    for n0 in range(start, end, BLOCK_N):
        n = n0 + tl.arange(0, BLOCK_N)
        nmask = n < end
        kvmask = nmask[:, None] & dmask[None, :]
        # Position n of this sequence: block table entry n // PAGE, offset n % PAGE.
        blk = tl.load(bt_ptr + b * bt_sb + n // PAGE, mask=nmask, other=0).to(tl.int64)
        k_row = blk * k_sblk + (n % PAGE) * k_sn + kvh * k_sh
        v_row = blk * v_sblk + (n % PAGE) * v_sn + kvh * v_sh
        # Masked loads read nothing past seq_len: stale or NaN rows never enter.
        k = tl.load(k_ptr + k_row[:, None] + d[None, :], mask=kvmask, other=0.0)
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * scale_log2  # log2 domain
        s = tl.where(nmask[None, :], s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, axis=1))
        alpha = tl.exp2(m_i - m_new)
        p = tl.exp2(s - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, axis=1)
        v = tl.load(v_ptr + v_row[:, None] + d[None, :], mask=kvmask, other=0.0)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
        m_i = m_new

    if SPLIT:
        # Partial state for the combine kernel; an empty split leaves
        # m=-inf, l=0, acc=0, which the combine weighs as zero.
        tl.store(m_ptr + b * p_sb + heads * p_sh + sp, m_i, mask=gmask)
        tl.store(l_ptr + b * p_sb + heads * p_sh + sp, l_i, mask=gmask)
        a_off = b * a_sb + heads[:, None] * a_sh + sp * a_ss + d[None, :]
        tl.store(acc_ptr + a_off, acc, mask=qmask)
    else:
        out = acc / l_i[:, None]
        o_off = b * o_sb + heads[:, None] * o_sh + d[None, :]
        tl.store(o_ptr + o_off, out.to(o_ptr.dtype.element_ty), mask=qmask)


@triton.jit
def _decode_combine_kernel(
    o_ptr, m_ptr, l_ptr, acc_ptr,
    o_sb, o_sh, p_sb, p_sh, a_sb, a_sh, a_ss,
    n_splits, head_dim,
    BLOCK_S: tl.constexpr, BLOCK_D: tl.constexpr,
):
    # Program (b, q head): log-sum-exp merge of the per-split partials.
    b = tl.program_id(0).to(tl.int64)
    h = tl.program_id(1).to(tl.int64)
    s = tl.arange(0, BLOCK_S)
    d = tl.arange(0, BLOCK_D)
    smask = s < n_splits
    dmask = d < head_dim
    m = tl.load(m_ptr + b * p_sb + h * p_sh + s, mask=smask, other=float("-inf"))
    l = tl.load(l_ptr + b * p_sb + h * p_sh + s, mask=smask, other=0.0)
    m_max = tl.max(m, axis=0)  # finite: split 0 always holds token 0
    w = tl.exp2(m - m_max)
    denom = tl.sum(w * l, axis=0)
    acc = tl.load(acc_ptr + b * a_sb + h * a_sh + s[:, None] * a_ss + d[None, :],
                  mask=smask[:, None] & dmask[None, :], other=0.0)
    out = tl.sum(acc * w[:, None], axis=0) / denom
    tl.store(o_ptr + b * o_sb + h * o_sh + d, out.to(o_ptr.dtype.element_ty), mask=dmask)


@functools.lru_cache(maxsize=None)
def _num_sms(device: torch.device) -> int:
    if device.type == "cuda" and torch.cuda.is_available():
        return torch.cuda.get_device_properties(device).multi_processor_count
    return 4  # interpreter: a few programs are plenty


_BLOCK_N = 64


def _pick_splits(batch: int, kv_heads: int, max_seq: int, device: torch.device) -> int:
    # Enough programs for ~2 waves over the SMs, but no split under one block.
    blocks = triton.cdiv(max_seq, _BLOCK_N)
    want = triton.cdiv(2 * _num_sms(device), batch * kv_heads)
    return max(1, min(want, blocks, 64))


def decode_attention(q, k_cache, v_cache, block_tables, seq_lens, scale, max_seq_len=None,
                     num_splits=None):
    """See ``reference.decode_attention``. ``max_seq_len`` (max of seq_lens,
    known to the scheduler) sizes the splits without a device sync; without it
    the cache capacity is used, which is correct but spreads work less evenly.
    ``num_splits`` overrides the heuristic (tests)."""
    b, hq, d = q.shape
    _, page, hkv, dk = k_cache.shape
    max_len = block_tables.shape[1] * page
    assert dk == d and hq % hkv == 0, (q.shape, k_cache.shape)
    assert k_cache.stride(-1) == 1 and v_cache.stride(-1) == 1 and block_tables.stride(-1) == 1
    q = _last_contig(q)
    group = hq // hkv
    out = torch.empty((b, hq, d), dtype=q.dtype, device=q.device)
    if b == 0:
        return out
    bound = max_len if max_seq_len is None else min(int(max_seq_len), max_len)
    if num_splits is None:
        num_splits = _pick_splits(b, hkv, bound, q.device)
    # Splits are whole blocks long so only the last block of a split is ragged.
    split_len = triton.cdiv(triton.cdiv(bound, num_splits), _BLOCK_N) * _BLOCK_N
    num_splits = triton.cdiv(bound, split_len)
    block_g = max(16, triton.next_power_of_2(group))  # tl.dot needs M >= 16
    block_d = max(16, triton.next_power_of_2(d))
    # fp32 caches get exact fp32 dots (no tf32); fp16/bf16 keep the default.
    precision = "ieee" if q.dtype == torch.float32 else None
    split = num_splits > 1
    if split:
        m = torch.empty((b, hq, num_splits), dtype=torch.float32, device=q.device)
        lse = torch.empty_like(m)
        acc = torch.empty((b, hq, num_splits, d), dtype=torch.float32, device=q.device)
    else:
        m = lse = acc = out  # placeholders, untouched when SPLIT is False
    _decode_attn_kernel[(b, hkv, num_splits)](
        q, k_cache, v_cache, block_tables, seq_lens,
        out, m, lse, acc,
        float(scale) * _LOG2E,
        q.stride(0), q.stride(1),
        block_tables.stride(0),
        k_cache.stride(0), k_cache.stride(1), k_cache.stride(2),
        v_cache.stride(0), v_cache.stride(1), v_cache.stride(2),
        out.stride(0), out.stride(1),
        m.stride(0) if split else 0, m.stride(1) if split else 0,
        acc.stride(0) if split else 0, acc.stride(1) if split else 0, acc.stride(2) if split else 0,
        group, d, split_len,
        BLOCK_G=block_g, BLOCK_D=block_d, BLOCK_N=_BLOCK_N,
        PAGE=page, SPLIT=split, PRECISION=precision, num_warps=4,
    )
    if split:
        _decode_combine_kernel[(b, hq)](
            out, m, lse, acc,
            out.stride(0), out.stride(1), m.stride(0), m.stride(1),
            acc.stride(0), acc.stride(1), acc.stride(2),
            num_splits, d,
            BLOCK_S=triton.next_power_of_2(num_splits), BLOCK_D=block_d, num_warps=4,
        )
    return out
