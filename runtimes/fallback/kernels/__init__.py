"""Op tables for the fallback runtime: a torch path (the specification, and
the CPU path) and a Triton path (GPUs), chosen once per process and logged.

Usage::

    from runtimes.fallback.kernels import select_ops, rope_tables
    ops = select_ops(device="cuda", kernels="auto")
    y, h = ops.rms_norm(x, w, eps, residual)

Importing this package never imports triton; only selecting the Triton table
does, so CPU images and the CLI need no triton install.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Callable

from . import reference
from .reference import rope_tables

__all__ = ["Ops", "select_ops", "rope_tables", "torch_ops", "OP_NAMES"]

log = logging.getLogger(__name__)

OP_NAMES = ("rms_norm", "silu_and_mul", "rotary", "decode_attention")


@dataclass(frozen=True)
class Ops:
    """The op table a model runs with. Signatures are those of ``reference``:

    - ``rms_norm(x, weight, eps, residual=None) -> (y, h)``
    - ``silu_and_mul(x) -> y``
    - ``rotary(q, k, positions, cos, sin) -> (q, k)`` (out-of-place)
    - ``decode_attention(q, k_cache, v_cache, slot_ids, seq_lens, scale,
      max_seq_len=None) -> out``
    """

    name: str
    rms_norm: Callable
    silu_and_mul: Callable
    rotary: Callable
    decode_attention: Callable


def torch_ops() -> Ops:
    return Ops(
        name="torch",
        rms_norm=reference.rms_norm,
        silu_and_mul=reference.silu_and_mul,
        rotary=reference.rotary,
        decode_attention=reference.decode_attention,
    )


def _triton_ops() -> Ops:
    from . import triton_ops  # imports triton; only reached when selected

    return Ops(
        name="triton",
        rms_norm=triton_ops.rms_norm,
        silu_and_mul=triton_ops.silu_and_mul,
        rotary=triton_ops.rotary,
        decode_attention=triton_ops.decode_attention,
    )


def _is_gpu(device: str) -> bool:
    # ROCm builds of torch also call their devices "cuda".
    return str(device).split(":")[0] in ("cuda", "hip", "rocm")


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes")


def _triton_importable() -> bool:
    try:
        import triton  # noqa: F401
    except Exception:  # ImportError, or a broken install raising at import
        return False
    return True


_logged: set[tuple[str, str, str]] = set()


def select_ops(device: str = "cpu", kernels: str = "auto") -> Ops:
    """Pick the op table for ``device``.

    kernels="auto": Triton on a CUDA/ROCm device when triton imports, else torch.
    kernels="torch": always torch.
    kernels="triton": Triton; on a CPU only under TRITON_INTERPRET=1 (tests),
    otherwise a ValueError, as it is when triton cannot be imported.
    """
    device = str(device)
    if kernels not in ("auto", "torch", "triton"):
        raise ValueError(f"kernels must be auto, torch or triton, not {kernels!r}")
    gpu = _is_gpu(device)
    if kernels == "torch":
        ops, why = torch_ops(), "requested"
    elif kernels == "triton":
        if not gpu and not _interpreting():
            raise ValueError(
                f"--kernels triton needs a GPU device (got {device!r}); "
                "on CPU it runs only under TRITON_INTERPRET=1"
            )
        if not _triton_importable():
            raise ValueError("--kernels triton requested but triton cannot be imported")
        ops, why = _triton_ops(), "requested"
    elif gpu and _triton_importable():
        ops, why = _triton_ops(), "auto: GPU and triton available"
    else:
        ops, why = torch_ops(), ("auto: CPU device" if not gpu else "auto: triton not importable")
    key = (device, kernels, ops.name)
    if key not in _logged:
        _logged.add(key)
        table = ", ".join(f"{op}={ops.name}" for op in OP_NAMES)
        log.info("kernels for device=%s: %s (%s)", device, table, why)
    return ops
