"""The torch reference ops (the specification) against naive textbook formulas:
HF-style rotate_half, a per-sequence/per-head attention loop, unfused norms."""

from __future__ import annotations

import dataclasses
import math
import os
import subprocess
import sys

import pytest
import torch

from paging import to_paged

from runtimes.fallback.kernels import Ops, reference, rope_tables, select_ops

TOL = {torch.float32: dict(atol=1e-5, rtol=1e-5), torch.float16: dict(atol=2e-3, rtol=2e-3),
       torch.bfloat16: dict(atol=2e-2, rtol=2e-2)}


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---- naive formulas -------------------------------------------------------

def naive_rms_norm(x, w, eps):
    x64 = x.double()
    return (x64 / torch.sqrt((x64 * x64).mean(-1, keepdim=True) + eps) * w.double())


def naive_rotate_half(x):
    x1 = x[..., : x.shape[-1] // 2]
    x2 = x[..., x.shape[-1] // 2 :]
    return torch.cat((-x2, x1), dim=-1)


def naive_rope(x, positions, head_dim, theta):
    # HF Llama: emb = cat(freqs, freqs); x*cos + rotate_half(x)*sin, fp64 here.
    inv = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))
    freqs = positions.double()[:, None] * inv[None, :]
    emb = torch.cat((freqs, freqs), dim=-1)[:, None, :]
    xd = x.double()
    return xd * emb.cos() + naive_rotate_half(xd) * emb.sin()


def naive_decode_attention(q, k_cache, v_cache, slot_ids, seq_lens, scale):
    b, hq, d = q.shape
    hkv = k_cache.shape[1]
    out = torch.zeros(b, hq, d, dtype=torch.float64)
    for i in range(b):
        n = int(seq_lens[i])
        s = int(slot_ids[i])
        for h in range(hq):
            kh = h // (hq // hkv)
            k = k_cache[s, kh, :n].double()
            v = v_cache[s, kh, :n].double()
            w = torch.softmax((k @ q[i, h].double()) * scale, dim=0)
            out[i, h] = w @ v
    return out


# ---- tests ----------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("shape", [(5, 576), (2, 3, 64), (1, 100)])
def test_rms_norm(dtype, shape):
    g = _gen(0)
    x = torch.randn(*shape, generator=g).to(dtype)
    r = torch.randn(*shape, generator=g).to(dtype)
    w = (1 + 0.1 * torch.randn(shape[-1], generator=g)).to(dtype)
    y, h = reference.rms_norm(x, w, 1e-6)
    assert h is x and y.dtype == dtype and y.shape == x.shape
    torch.testing.assert_close(y.double(), naive_rms_norm(x, w, 1e-6), **TOL[dtype])
    y2, h2 = reference.rms_norm(x, w, 1e-6, residual=r)
    assert torch.equal(h2, x + r)
    torch.testing.assert_close(y2.double(), naive_rms_norm(x + r, w, 1e-6), **TOL[dtype])


def test_rms_norm_eps_matters():
    # A tiny-magnitude row: eps dominates, so a dropped eps would show.
    x = torch.full((1, 8), 1e-4)
    w = torch.ones(8)
    y, _ = reference.rms_norm(x, w, 1e-2)
    torch.testing.assert_close(y, x / math.sqrt(1e-8 + 1e-2))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_silu_and_mul(dtype):
    x = torch.randn(3, 4, 2 * 96, generator=_gen(1)).to(dtype)
    a, b = x[..., :96].double(), x[..., 96:].double()
    want = a / (1 + torch.exp(-a)) * b
    got = reference.silu_and_mul(x)
    assert got.shape == (3, 4, 96) and got.dtype == dtype
    torch.testing.assert_close(got.double(), want, **TOL[dtype])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("head_dim", [64, 80, 96])
def test_rotary_matches_hf_rotate_half(dtype, head_dim):
    g = _gen(2)
    t, hq, hkv = 7, 6, 2
    q = torch.randn(t, hq, head_dim, generator=g).to(dtype)
    k = torch.randn(t, hkv, head_dim, generator=g).to(dtype)
    positions = torch.tensor([0, 1, 5, 17, 300, 2047, 3], dtype=torch.int64)
    cos, sin = rope_tables(head_dim, 2048, theta=10000.0)
    assert cos.shape == (2048, head_dim // 2) and cos.dtype == torch.float32
    q2, k2 = reference.rotary(q, k, positions, cos, sin)
    assert q2.dtype == dtype and k2.shape == k.shape
    torch.testing.assert_close(q2.double(), naive_rope(q, positions, head_dim, 10000.0), **TOL[dtype])
    torch.testing.assert_close(k2.double(), naive_rope(k, positions, head_dim, 10000.0), **TOL[dtype])
    # out-of-place: inputs untouched
    assert not torch.equal(q2, q)


def test_rotary_position_zero_is_identity():
    q = torch.randn(1, 2, 64)
    k = torch.randn(1, 1, 64)
    cos, sin = rope_tables(64, 4)
    q2, k2 = reference.rotary(q, k, torch.zeros(1, dtype=torch.int64), cos, sin)
    torch.testing.assert_close(q2, q)
    torch.testing.assert_close(k2, k)


def _hf_llama3_inv_freq(head_dim, theta, factor, low, high, old):
    # Straight transcription of the published Llama 3.1 rule, per frequency.
    out = []
    for i in range(0, head_dim, 2):
        f = 1.0 / theta ** (i / head_dim)
        wl = 2 * math.pi / f
        if wl < old / high:
            out.append(f)
        elif wl > old / low:
            out.append(f / factor)
        else:
            sm = (old / wl - low) / (high - low)
            out.append((1 - sm) * f / factor + sm * f)
    return torch.tensor(out, dtype=torch.float64)


def test_rope_tables_llama3_scaling():
    sc = {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
          "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}
    cos, sin = rope_tables(64, 4096, theta=500000.0, scaling=sc)
    inv = _hf_llama3_inv_freq(64, 500000.0, 32.0, 1.0, 4.0, 8192)
    ang = torch.arange(4096, dtype=torch.float64)[:, None] * inv[None, :]
    torch.testing.assert_close(cos.double(), ang.cos(), atol=1e-6, rtol=0)
    torch.testing.assert_close(sin.double(), ang.sin(), atol=1e-6, rtol=0)
    plain_cos, _ = rope_tables(64, 4096, theta=500000.0)
    assert not torch.allclose(plain_cos, cos)  # scaling changed the low frequencies
    torch.testing.assert_close(plain_cos[:, 0], cos[:, 0])  # highest frequency kept
    lin_cos, _ = rope_tables(64, 16, theta=10000.0, scaling={"type": "linear", "factor": 2.0})
    # linear: position p with factor 2 has the phase of p/2 unscaled
    torch.testing.assert_close(lin_cos[2], rope_tables(64, 16)[0][1])
    with pytest.raises(ValueError):
        rope_tables(64, 16, scaling={"rope_type": "yarn", "factor": 4.0})


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("b,hq,hkv,d", [(1, 4, 4, 64), (3, 9, 3, 64), (5, 8, 2, 80), (3, 12, 4, 96)])
@pytest.mark.parametrize("block_size", [16, 5])
def test_decode_attention_matches_loop(dtype, b, hq, hkv, d, block_size):
    g = _gen(3)
    slots, max_len = 7, 40
    k_cache = torch.randn(slots, hkv, max_len, d, generator=g).to(dtype)
    v_cache = torch.randn(slots, hkv, max_len, d, generator=g).to(dtype)
    q = torch.randn(b, hq, d, generator=g).to(dtype)
    slot_ids = torch.tensor([6, 0, 3, 2, 5][:b], dtype=torch.int64)
    seq_lens = torch.tensor([1, 40, 17, 2, 33][:b], dtype=torch.int64)
    scale = d ** -0.5
    want = naive_decode_attention(q, k_cache, v_cache, slot_ids, seq_lens, scale)
    # Garbage beyond seq_len must not leak in. It is finite: the runtime
    # zeros blocks when it hands them out (a NaN test is in test_engine).
    for i in range(b):
        k_cache[slot_ids[i], :, seq_lens[i]:] = 1e4
        v_cache[slot_ids[i], :, seq_lens[i]:] = -3e4
    kp, tables = to_paged(k_cache, block_size, _gen(4))
    vp, _ = to_paged(v_cache, block_size, _gen(4))
    got = reference.decode_attention(q, kp, vp, tables[slot_ids], seq_lens, scale)
    assert got.shape == (b, hq, d) and got.dtype == dtype
    torch.testing.assert_close(got.double(), want, **TOL[dtype])
    # Consecutive blocks take the no-copy view for a lone sequence: same answer.
    contiguous = torch.arange(tables.numel()).view(tables.shape) + 1
    kc, vc = kp.clone(), vp.clone()
    kc[contiguous.flatten()], vc[contiguous.flatten()] = kp[tables.flatten()], vp[tables.flatten()]
    for i in range(b):
        one = reference.decode_attention(q[i : i + 1], kc, vc, contiguous[slot_ids[i : i + 1]], seq_lens[i : i + 1], scale)
        torch.testing.assert_close(one.double(), want[i : i + 1], **TOL[dtype])


def test_select_ops_cpu_is_torch_and_keeps_triton_unimported(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    ops = select_ops("cpu", "auto")
    assert isinstance(ops, Ops) and ops.name == "torch"
    assert ops.rms_norm is reference.rms_norm
    assert select_ops("cpu", "torch").name == "torch"
    with pytest.raises(ValueError):
        select_ops("cpu", "triton")  # no interpreter: refused
    with pytest.raises(ValueError):
        select_ops("cpu", "fast")
    with pytest.raises(dataclasses.FrozenInstanceError):
        ops.name = "x"


def test_importing_kernels_does_not_import_triton():
    # Fresh interpreter: the package import alone must not pull triton in.
    code = ("import sys; import runtimes.fallback.kernels as k; k.select_ops('cpu');"
            "assert 'triton' not in sys.modules, 'triton imported'")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env={**os.environ, "TRITON_INTERPRET": "0"})
    assert r.returncode == 0, r.stderr
