"""The LoRA delta as two Triton kernels (Punica's BGMV: each row gathers its own slot), for GPUs.

    shrink: t[r, :] = A[slot[r]] @ x[r]          A: [slots, W, K]   (lora/slots.py's layout)
    expand: y[r, :] += t[r, :] @ B[slot[r]]      B: [slots, W, N]

A row whose slot is -1 (the base model) is left alone. Accumulates in fp32, stores in y's
dtype. ``bgmv`` has the meaning of ``slots.LoraBatch.apply``; tests/kernels/lora_triton_cases.py
checks it against the torch path under ``TRITON_INTERPRET=1``. Importing this module imports triton.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _shrink_kernel(x_ptr, a_ptr, t_ptr, slot_ptr, K, W, x_stride, t_stride,
                   BLOCK_W: tl.constexpr, BLOCK_K: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    ws = tl.program_id(1) * BLOCK_W + tl.arange(0, BLOCK_W)
    slot = tl.load(slot_ptr + row).to(tl.int64)
    k_live = tl.where(slot >= 0, K, 0)  # a base row reads nothing (masks by bound, not by a scalar bool)
    slot = tl.maximum(slot, 0)
    acc = tl.zeros((BLOCK_W,), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        ks = k0 + tl.arange(0, BLOCK_K)
        x = tl.load(x_ptr + row * x_stride + ks, mask=ks < k_live, other=0.0).to(tl.float32)
        a = tl.load(a_ptr + slot * W * K + ws[:, None] * K + ks[None, :],
                    mask=(ws[:, None] < W) & (ks[None, :] < k_live), other=0.0).to(tl.float32)
        acc += tl.sum(a * x[None, :], axis=1)
    tl.store(t_ptr + row * t_stride + ws, acc, mask=ws < W)


@triton.jit
def _expand_kernel(t_ptr, b_ptr, y_ptr, slot_ptr, W, N, t_stride, y_stride,
                   BLOCK_N: tl.constexpr, BLOCK_W: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    ns = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    slot = tl.load(slot_ptr + row).to(tl.int64)
    n_live = tl.where(slot >= 0, N, 0)  # a base row is neither read nor written
    slot = tl.maximum(slot, 0)
    acc = tl.zeros((BLOCK_N,), dtype=tl.float32)
    for w0 in range(0, W, BLOCK_W):
        ws = w0 + tl.arange(0, BLOCK_W)
        t = tl.load(t_ptr + row * t_stride + ws, mask=ws < W, other=0.0)
        b = tl.load(b_ptr + slot * W * N + ws[:, None] * N + ns[None, :],
                    mask=(ws[:, None] < W) & (ns[None, :] < n_live), other=0.0).to(tl.float32)
        acc += tl.sum(t[:, None] * b, axis=0)
    mask = ns < n_live
    y = tl.load(y_ptr + row * y_stride + ns, mask=mask, other=0.0).to(tl.float32)
    tl.store(y_ptr + row * y_stride + ns, (y + acc).to(y_ptr.dtype.element_ty), mask=mask)


def bgmv(x: torch.Tensor, a: torch.Tensor, b: torch.Tensor, row_slots: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``y[r] += (x[r] A[s]^T) B[s]`` with s = row_slots[r] (-1: unchanged), in place; returns y."""
    rows, k = x.shape
    slots, w, _ = a.shape
    n = b.shape[2]
    x, a, b = x.contiguous(), a.contiguous(), b.contiguous()
    t = torch.empty((rows, w), dtype=torch.float32, device=x.device)
    bw, bk = triton.next_power_of_2(w), min(128, triton.next_power_of_2(k))
    _shrink_kernel[(rows, triton.cdiv(w, bw))](x, a, t, row_slots, k, w, x.stride(0), t.stride(0),
                                               BLOCK_W=bw, BLOCK_K=bk)
    bn, bw2 = min(128, triton.next_power_of_2(n)), min(64, triton.next_power_of_2(w))
    _expand_kernel[(rows, triton.cdiv(n, bn))](t, b, y, row_slots, w, n, t.stride(0), y.stride(0),
                                               BLOCK_N=bn, BLOCK_W=bw2)
    return y
