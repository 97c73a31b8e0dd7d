"""Every Triton kernel against its torch reference, run by the Triton
interpreter on the CPU (fp32 and fp16; the interpreter has no bf16 math).

Not collected by a plain ``pytest tests``: TRITON_INTERPRET must be set before
triton is first imported in a process (triton.language's own helpers are
decorated at import), and once set it would leak into every later test. So
``test_kernels_triton.py`` runs this file in a fresh interpreter with the
variable set. To run it directly, with per-case output:

    TRITON_INTERPRET=1 python -m pytest -q tests/kernels/triton_cases.py
"""

from __future__ import annotations

import os
import random
import sys

import pytest

if os.environ.get("TRITON_INTERPRET") != "1":
    if "triton" in sys.modules:
        pytest.skip("needs TRITON_INTERPRET=1 before triton is imported", allow_module_level=True)
    os.environ["TRITON_INTERPRET"] = "1"  # nothing imported triton yet: safe to set here

import torch  # noqa: E402

from paging import to_paged  # noqa: E402

import triton  # noqa: F401,E402  (a test dependency: missing triton fails, never skips)

from runtimes.fallback import kernels as kpkg  # noqa: E402
from runtimes.fallback.kernels import reference as R  # noqa: E402
from runtimes.fallback.kernels import rope_tables  # noqa: E402

# fp16: the kernels and the reference both compute in fp32 and round once, so
# outputs differ by about an fp16 ulp (decode attention also rounds P to fp16
# before the PV product, as flash kernels do).
TOL = {torch.float32: dict(atol=1e-5, rtol=1e-5), torch.float16: dict(atol=2e-3, rtol=2e-3)}
ATTN_TOL = {torch.float32: dict(atol=2e-5, rtol=2e-5), torch.float16: dict(atol=3e-3, rtol=3e-3)}
DTYPES = [torch.float32, torch.float16]


@pytest.fixture(scope="module")
def T():
    from runtimes.fallback.kernels import triton_ops

    assert type(triton_ops._rms_norm_kernel).__name__ == "InterpretedFunction"
    return triton_ops


# Random shapes on top of the chosen ones: drawn once from a fixed seed so a failure
# reproduces, and mostly not powers of two.
_rng = random.Random(20261126)
RANDOM_NORM = [(_rng.randint(1, 9), _rng.randint(3, 900)) for _ in range(3)]
RANDOM_SILU = [(_rng.randint(1, 6), 2 * _rng.randint(1, 1100)) for _ in range(3)]
RANDOM_ROTARY = [(_rng.randint(1, 7), 3 * g, g, 2 * _rng.randint(4, 64)) for g in (1, 2, 3)]
RANDOM_ATTN = []
for _ in range(3):
    _b, _hkv, _group = _rng.randint(1, 5), _rng.randint(1, 3), _rng.randint(1, 4)
    RANDOM_ATTN.append((_b, _hkv * _group, _hkv, 2 * _rng.randint(8, 64),
                        [_rng.randint(1, 130) for _ in range(_b)], _rng.choice([None, 1, 2, 3])))


def _g(seed):
    return torch.Generator().manual_seed(seed)


def test_select_ops_triton_under_interpreter(T):
    ops = kpkg.select_ops("cpu", "triton")
    assert ops.name == "triton"
    assert ops.decode_attention is T.decode_attention


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(5, 576), (1, 64), (2, 3, 100)] + RANDOM_NORM)
@pytest.mark.parametrize("with_res", [False, True])
def test_rms_norm(T, dtype, shape, with_res):
    g = _g(10)
    x = torch.randn(*shape, generator=g).to(dtype)
    w = (1 + 0.2 * torch.randn(shape[-1], generator=g)).to(dtype)
    r = torch.randn(*shape, generator=g).to(dtype) if with_res else None
    y, h = T.rms_norm(x, w, 1e-5, r)
    y_ref, h_ref = R.rms_norm(x, w, 1e-5, r)
    assert y.shape == x.shape and y.dtype == dtype and h.shape == x.shape
    torch.testing.assert_close(y, y_ref, **TOL[dtype])
    torch.testing.assert_close(h, h_ref, atol=0, rtol=0)  # one rounding of x + r, same as torch


def test_rms_norm_strided_rows(T):
    # Rows of a wider buffer (e.g. a slice of a fused output): row stride != H.
    base = torch.randn(4, 700, generator=_g(11))
    x = base[:, :576]
    w = torch.randn(576, generator=_g(12))
    torch.testing.assert_close(T.rms_norm(x, w, 1e-6)[0], R.rms_norm(x, w, 1e-6)[0], **TOL[torch.float32])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(3, 2 * 200), (2, 2, 2 * 1536), (1, 2 * 1500)] + RANDOM_SILU)
def test_silu_and_mul(T, dtype, shape):
    x = (2 * torch.randn(*shape, generator=_g(20))).to(dtype)
    y = T.silu_and_mul(x)
    assert y.shape == (*shape[:-1], shape[-1] // 2) and y.dtype == dtype
    torch.testing.assert_close(y, R.silu_and_mul(x), **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("t,hq,hkv,d", [(1, 4, 4, 64), (5, 9, 3, 64), (3, 8, 2, 80), (4, 12, 4, 96)] + RANDOM_ROTARY)
def test_rotary(T, dtype, t, hq, hkv, d):
    g = _g(30)
    q = torch.randn(t, hq, d, generator=g).to(dtype)
    k = torch.randn(t, hkv, d, generator=g).to(dtype)
    cos, sin = rope_tables(d, 512, theta=500000.0,
                           scaling={"rope_type": "llama3", "factor": 8.0,
                                    "original_max_position_embeddings": 128})
    pos = torch.randint(0, 512, (t,), generator=g)
    q2, k2 = T.rotary(q, k, pos, cos, sin)
    q_ref, k_ref = R.rotary(q, k, pos, cos, sin)
    torch.testing.assert_close(q2, q_ref, **TOL[dtype])
    torch.testing.assert_close(k2, k_ref, **TOL[dtype])


def test_rotary_views_of_fused_qkv(T):
    # q and k sliced out of one [T, (Hq + 2*Hkv) * D] projection: strided views.
    t, hq, hkv, d = 3, 6, 2, 64
    qkv = torch.randn(t, (hq + 2 * hkv) * d, generator=_g(31))
    q = qkv[:, : hq * d].view(t, hq, d)
    k = qkv[:, hq * d : (hq + hkv) * d].view(t, hkv, d)
    before = qkv.clone()
    cos, sin = rope_tables(d, 64)
    pos = torch.tensor([0, 7, 63])
    q2, k2 = T.rotary(q, k, pos, cos, sin)
    q_ref, k_ref = R.rotary(q, k, pos, cos, sin)
    torch.testing.assert_close(q2, q_ref, **TOL[torch.float32])
    torch.testing.assert_close(k2, k_ref, **TOL[torch.float32])
    assert torch.equal(qkv, before)  # out-of-place


# (B, Hq, Hkv, D, seq_lens, num_splits): GQA ratios 1, 3, 4; head dims 64/80/96;
# lengths 1, block-ragged and full; the split-free and split paths.
ATTN_CASES = [
    (1, 4, 4, 64, [1], None),
    (1, 8, 2, 64, [130], 3),
    (3, 9, 3, 64, [1, 77, 130], None),
    (3, 12, 4, 80, [64, 2, 129], 1),
    (5, 8, 2, 96, [1, 33, 130, 65, 7], 2),
    (5, 6, 2, 80, [12, 1, 1, 100, 128], None),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("b,hq,hkv,d,lens,splits", ATTN_CASES + RANDOM_ATTN)
def test_decode_attention(T, dtype, b, hq, hkv, d, lens, splits):
    g = _g(40)
    slots, max_len = 7, 130
    k_cache = torch.randn(slots, hkv, max_len, d, generator=g).to(dtype)
    v_cache = torch.randn(slots, hkv, max_len, d, generator=g).to(dtype)
    q = torch.randn(b, hq, d, generator=g).to(dtype)
    slot_ids = torch.randperm(slots, generator=g)[:b]
    seq_lens = torch.tensor(lens, dtype=torch.int64)
    # Rows past each length are garbage, finite (the runtime zeros blocks
    # when it hands them out); they must not leak.
    for i in range(b):
        k_cache[slot_ids[i], :, lens[i]:] = 1e4
        v_cache[slot_ids[i], :, lens[i]:] = -3e4
    # Scattered blocks, and a block size that does not divide the kernel's tile.
    page = (16, 5, 32)[b % 3]
    kp, tables = to_paged(k_cache, page, _g(42))
    vp, _ = to_paged(v_cache, page, _g(42))
    tables = tables[slot_ids].contiguous()
    scale = d ** -0.5
    want = R.decode_attention(q, kp, vp, tables, seq_lens, scale)
    assert torch.isfinite(want).all()
    got = T.decode_attention(q, kp, vp, tables, seq_lens, scale, num_splits=splits)
    assert got.shape == (b, hq, d) and got.dtype == dtype
    torch.testing.assert_close(got, want, **ATTN_TOL[dtype])
    # The scheduler-supplied bound gives the same answer.
    got2 = T.decode_attention(q, kp, vp, tables, seq_lens, scale, max_seq_len=max(lens))
    torch.testing.assert_close(got2, want, **ATTN_TOL[dtype])


def test_decode_attention_bf16_values_emulated_in_fp32(T):
    """The interpreter has no bf16 math: bf16-rounded K/V/q, computed in fp32,
    checks the kernel on exactly the values a bf16 cache holds."""
    g = _g(43)
    k_cache = torch.randn(3, 2, 70, 64, generator=g).bfloat16().float()
    v_cache = torch.randn(3, 2, 70, 64, generator=g).bfloat16().float()
    q = torch.randn(3, 8, 64, generator=g).bfloat16().float()
    kp, tables = to_paged(k_cache, 16, _g(44))
    vp, _ = to_paged(v_cache, 16, _g(44))
    lens = torch.tensor([70, 1, 33])
    want = R.decode_attention(q, kp, vp, tables, lens, 0.125)
    got = T.decode_attention(q, kp, vp, tables, lens, 0.125, num_splits=2)
    torch.testing.assert_close(got, want, **ATTN_TOL[torch.float32])


def test_decode_attention_detects_wrong_kv_head(T):
    # Guard that the comparison can fail: swapping kv heads must be caught.
    g = _g(41)
    k_cache = torch.randn(2, 40, 2, 64, generator=g)  # paged: [blocks, page, Hkv, D]
    v_cache = torch.randn(2, 40, 2, 64, generator=g)
    q = torch.randn(1, 4, 64, generator=g)
    args = (torch.tensor([[1]]), torch.tensor([40]), 0.125)
    got = T.decode_attention(q, k_cache, v_cache, *args)
    wrong = R.decode_attention(q, k_cache.flip(2), v_cache.flip(2), *args)
    assert not torch.allclose(got, wrong, **ATTN_TOL[torch.float32])
