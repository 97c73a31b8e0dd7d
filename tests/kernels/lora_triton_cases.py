"""The Triton LoRA kernels (runtimes/fallback/lora/triton_bgmv.py) against the torch path, run
under TRITON_INTERPRET=1 by test_lora_triton.py (fp32 and fp16: the interpreter has no bf16)."""

from __future__ import annotations

import pytest
import torch

from runtimes.fallback.lora.slots import LoraBatch, segments_for
from runtimes.fallback.lora.triton_bgmv import bgmv


class _Weights:  # the two fields LoraBatch reads
    def __init__(self, a, b):
        self.a, self.b = [{"g": a}], [{"g": b}]


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float16, 2e-2)])
@pytest.mark.parametrize("rows,k,w,n", [(5, 64, 16, 96), (7, 576, 48, 960), (3, 100, 24, 130)])
def test_bgmv_matches_the_segmented_torch_path(dtype, tol, rows, k, w, n):
    g = torch.Generator().manual_seed(rows * k)
    slots = 3
    a = (torch.randn(slots, w, k, generator=g) * 0.1).to(dtype)
    b = (torch.randn(slots, w, n, generator=g) * 0.1).to(dtype)
    x = torch.randn(rows, k, generator=g).to(dtype)
    y = torch.randn(rows, n, generator=g).to(dtype)
    row_slots = [(r % (slots + 1)) - 1 for r in range(rows)]  # -1 (base), 0, 1, 2, ...
    want = LoraBatch(_Weights(a.float(), b.float()), segments_for(row_slots, None)).apply(0, "g", x.float(), y.float().clone())
    got = bgmv(x, a, b, torch.tensor(row_slots, dtype=torch.int32), y.clone())
    torch.testing.assert_close(got.float(), want, atol=tol, rtol=tol)
    base = [r for r, s in enumerate(row_slots) if s < 0]
    assert torch.equal(got[base], y[base])  # base rows untouched
