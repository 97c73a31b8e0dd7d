"""The matmuls of the model: y = x @ W^T (+ b), through the fastest path this
machine has for the weights' precision.

Backends (chosen once per model, logged):
- ``int4`` (CPU, ``--quantization auto`` where lossless): groups of 32 along
  the input, 4 bits plus a scale and an offset per group. A Q4_1 GGUF's
  blocks are exactly that, so its dequantized weights pack back without loss
  (checked per matrix at load; bf16 scales are the only rounding). At one row
  it reads half of int8's bytes: 4.3 vs 9.4 ms for SmolLM2's 30 layers here.
- ``int8`` (CPU): weights quantized per output channel at load time.
  Decode steps of few rows (``cpu_isa.direct_rows``) multiply the int8 weights
  directly with bf16 activations (``_weight_int8pack_mm``: a quarter of fp32's
  bytes on a memory-bound step); prompt rows go through oneDNN on an fp32 copy
  of the same int8 values (fp32 activations keep the prompt's K/V exact to the
  weights). Bigger decode batches are compute-bound: on a CPU with native bf16
  (AVX512-BF16, AMX) they take oneDNN on a bf16 copy (about 1.8x fp32's rate
  here), elsewhere the fp32 copy.
- ``w8a8``: int8 weights and int8 activations quantized per row, multiplied
  exactly into int32 (``torch._int_mm``): fastest at large batches and exactly
  batch-invariant, but it loses more of a small model's quality.
- ``onednn``: fp32 with weights reordered once for oneDNN.
- ``torch``: plain ``F.linear`` (GPUs, other dtypes).
bench/results/quantization_quality.json and runtime_throughput.json hold the
measured speed and the agreement with fp32 of each.

Every backend computes the rows it is given, no padding. Batch invariance
(a row's bits independent of its neighbours) is not a property of these GEMMs:
they pick kernels by row count and CPU. ``__call__`` therefore takes optional
row groups: each group is computed by its own call, so a sequence's rows see
the same call whatever else is in the batch (``batch.ForwardBatch.row_groups``).
"""

from __future__ import annotations

import functools

import logging

import torch
import torch.nn.functional as F

from ..cpu_isa import direct_rows, onednn_native_bf16

log = logging.getLogger(__name__)

_ROWS_HINT = 16  # oneDNN picks its weight layout for about this many rows
# INT8_DIRECT_ROWS (fp32 copy past it) and BF16_DIRECT_ROWS (bf16 copy past it) live in cpu_isa, which the
# planner reads too. Measured on this project's 2-core machine (engine decode step, SmolLM2): int8 direct
# 20 ms at 1 row vs fp32 oneDNN 36 ms; at 16 rows 81 vs 75 ms. Re-measured per matrix (SmolLM2 shapes,
# 1 thread, AVX-512 VNNI/BF16 EPYC, contended): at 9, 16 and 32 rows oneDNN fp32 beats the int4 kernel by
# 10-25 % and int8 by 20-40 % on every layer matrix, so wider rows stay on fp32.
INT4_GROUP = 32
BACKENDS = ("auto", "torch", "onednn", "int4", "int8", "w8a8")
QUANTIZATIONS = (None, "auto", "int4", "int8", "w8a8")


def onednn_available(device: str, dtype: torch.dtype) -> bool:
    return (
        str(device) == "cpu"
        and dtype == torch.float32
        and torch.backends.mkldnn.is_available()
        and hasattr(torch.ops.mkldnn, "_linear_pointwise")
        and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")
    )


@functools.lru_cache(maxsize=None)
def onednn_bf16_available() -> bool:
    """Whether oneDNN prepacks bf16 weights here: it refuses (RuntimeError) on a CPU without AVX512-BW/VL/DQ
    or AVX-NE-CONVERT, or one held below them by ONEDNN_MAX_CPU_ISA. Tried once on a tiny matrix."""
    if not onednn_available("cpu", torch.float32):
        return False
    try:
        torch.ops.mkldnn._reorder_linear_weight(torch.zeros(8, 8, dtype=torch.bfloat16), _ROWS_HINT)
    except RuntimeError:
        return False
    return True


@functools.lru_cache(maxsize=None)
def bf16_decode() -> bool:
    """Batched decode rows take a bf16 weight copy: oneDNN prepacks bf16 and the CPU multiplies it natively
    (``cpu_isa.onednn_native_bf16``); emulated bf16 would be slower than the fp32 copy."""
    return onednn_bf16_available() and onednn_native_bf16()


def int8_available(device: str, dtype: torch.dtype) -> bool:
    return (
        onednn_available(device, dtype)
        and hasattr(torch.ops.aten, "_weight_int8pack_mm")
        and hasattr(torch, "_int_mm")
    )


@functools.lru_cache(maxsize=None)
def int_mm_exact() -> bool:
    """Whether ``torch._int_mm`` multiplies int8 exactly on this CPU. Without VNNI (an AVX2-only or
    AVX512_CORE CPU, or oneDNN held to one by ONEDNN_MAX_CPU_ISA) torch 2.13's CPU path gives wrong
    sums for most elements (measured: 38,395 of 38,400 off, by up to 110,449), so w8a8 is refused
    there rather than served wrong. Checked once, on a product that saturates any 16-bit shortcut."""
    a = torch.full((4, 64), 127, dtype=torch.int8)
    a[1::2] = -128
    b = torch.full((64, 8), -128, dtype=torch.int8)
    b[:, 1::2] = 127
    try:
        got = torch._int_mm(a, b)
    except RuntimeError:
        return False
    return torch.equal(got.long(), a.long() @ b.long())


def w8a8_available(device: str, dtype: torch.dtype) -> bool:
    return int8_available(device, dtype) and int_mm_exact()


def int4_available(device: str, dtype: torch.dtype) -> bool:
    return int8_available(device, dtype) and hasattr(torch.ops.aten, "_weight_int4pack_mm_for_cpu")


def int4_groups(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """(q [N, K] int32 in 0..15, scale, min [N, K/32]) with weight == q * scale + min
    exactly, or None when the matrix is not 4-bit in groups of 32."""
    n, k = weight.shape
    if k % INT4_GROUP:
        return None
    g = weight.float().view(n, k // INT4_GROUP, INT4_GROUP)
    lo, hi = g.amin(-1), g.amax(-1)
    scale = (hi - lo) / 15
    q = torch.round((g - lo[..., None]) / scale.clamp_min(1e-30)[..., None]).clamp_(0, 15)
    if not torch.equal(q * scale[..., None] + lo[..., None], g):
        return None
    return q.to(torch.int32).view(n, k), scale, lo


def _finish(y: torch.Tensor, bias: torch.Tensor | None, residual: bool) -> torch.Tensor:
    """A bf16 kernel's rows as the model's fp32 (kept bf16 for a residual add when there is no bias)."""
    if residual and bias is None:
        return y
    y = y.float()
    return y if bias is None else y.add_(bias)


def _bf16_copy(weight: torch.Tensor) -> torch.Tensor | None:
    """oneDNN's bf16 prepack of the weights, for batched decode rows, where ``bf16_decode``."""
    if not bf16_decode():
        return None
    return torch.ops.mkldnn._reorder_linear_weight(weight.bfloat16().contiguous(), _ROWS_HINT)


def _quantize_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 per row: x ~ q * scale, scale [rows, 1]."""
    scale = x.abs().amax(dim=-1, keepdim=True).clamp_min(1e-8) / 127.0
    return torch.round(x / scale).to(torch.int8), scale


class Linear:
    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, backend: str,
                 int4: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None):
        """``int4``: ``int4_groups(weight)`` when the caller already has it."""
        self.out_features, self.in_features = weight.shape
        self.bias = bias
        self.backend = backend
        self.weight_bf16 = None
        if backend == "onednn":
            self.weight = torch.ops.mkldnn._reorder_linear_weight(weight.contiguous(), _ROWS_HINT)
        elif backend == "int4":
            groups = int4 if int4 is not None else int4_groups(weight)
            if groups is None:
                raise ValueError("weights are not 4-bit in groups of 32; use int8")
            q, scale, lo = groups
            self.weight = torch.ops.aten._convert_weight_to_int4pack_for_cpu(q, 1)
            # torch's int4 convention: w = (q - 8) * scale + zero.
            self.scale = torch.stack([scale, lo + 8 * scale], -1).transpose(0, 1).contiguous().bfloat16()
            self.weight_wide = torch.ops.mkldnn._reorder_linear_weight(weight.float().contiguous(), _ROWS_HINT)
            self.weight_bf16 = _bf16_copy(weight.float())
        elif backend == "int8":
            q, scale = _quantize_rows(weight.float())
            self.weight, self.scale = q.contiguous(), scale.view(-1).bfloat16()
            dequant = q.float() * scale
            self.weight_wide = torch.ops.mkldnn._reorder_linear_weight(dequant, _ROWS_HINT)
            self.weight_bf16 = _bf16_copy(dequant)
        elif backend == "w8a8":
            if not int_mm_exact():
                raise ValueError("w8a8 needs exact int8 x int8 matmuls, which torch does not give on this CPU (no VNNI)")
            q, scale = _quantize_rows(weight.float())
            self.weight = q.t()  # [in, out]: a transposed view is the layout _int_mm wants
            self.scale = scale.view(1, -1)
        elif backend == "torch":
            self.weight = weight
        else:
            raise ValueError(f"unknown linear backend {backend!r}")

    @property
    def direct_rows(self) -> int:
        return direct_rows(self.weight_bf16 is not None)

    def _mm(self, x: torch.Tensor, wide: bool = False, residual: bool = False) -> torch.Tensor:
        if self.backend in ("int8", "int4"):
            if wide or x.shape[0] > self.direct_rows:
                if not wide and self.weight_bf16 is not None:
                    y = torch.ops.mkldnn._linear_pointwise(x.bfloat16(), self.weight_bf16, None, "none", [], "")
                    return _finish(y, self.bias, residual)
                return torch.ops.mkldnn._linear_pointwise(x, self.weight_wide, self.bias, "none", [], "")
            if self.backend == "int4":
                y = torch.ops.aten._weight_int4pack_mm_for_cpu(x.bfloat16(), self.weight, INT4_GROUP, self.scale)
            else:
                y = torch.ops.aten._weight_int8pack_mm(x.bfloat16(), self.weight, self.scale)
            return _finish(y, self.bias, residual)
        if self.backend == "w8a8":
            xq, xs = _quantize_rows(x)
            y = torch._int_mm(xq, self.weight).float().mul_(xs).mul_(self.scale)
            return y if self.bias is None else y.add_(self.bias)
        if self.backend == "onednn":
            return torch.ops.mkldnn._linear_pointwise(x, self.weight, self.bias, "none", [], "")
        return F.linear(x, self.weight, self.bias)

    def __call__(self, x: torch.Tensor, groups: tuple[tuple[int, int, bool], ...] | None = None,
                 wide: bool = False, residual: bool = False) -> torch.Tensor:
        """``wide``: take the full-precision-activation path even for few rows
        (prompt rows: their K/V are what every later token attends to, and bf16
        activations there flipped a small model's answers). ``groups``:
        (start, end, wide) row ranges, one call each (batch-invariant mode).
        ``residual``: the output only feeds an add into the fp32 residual stream,
        which upcasts it in the same kernel, so bf16 rows may come back as they are
        (one cast fewer per matmul on the decode path)."""
        if groups is None:
            return self._mm(x, wide, residual)
        # Batch-invariant mode: one call per group, each on a contiguous copy.
        out = x.new_empty(x.shape[0], self.out_features)
        for start, end, w in groups:
            out[start:end] = self._mm(x[start:end].contiguous(), w)
        return out


def choose_backend(device: str, dtype: torch.dtype, requested: str = "auto", quantization: str | None = None) -> str:
    """``quantization``: None (full precision), "int4", "int8" or "w8a8" (CPU);
    "auto" is resolved per matrix by ``auto_backend``."""
    if requested not in BACKENDS:
        raise ValueError(f"linear backend must be one of {BACKENDS}, not {requested!r}")
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization must be auto, int4, int8, w8a8 or none, not {quantization!r}")
    if quantization == "auto":
        quantization = "int8" if int8_available(device, dtype) else None
    if quantization is not None and requested not in ("auto", quantization):
        raise ValueError(f"--quantization {quantization} needs the {quantization} linear backend, not {requested!r}")
    if requested == "auto":
        requested = quantization or ("onednn" if onednn_available(device, dtype) else "torch")
    if requested == "onednn" and not onednn_available(device, dtype):
        raise ValueError("oneDNN linear needs a CPU, float32 and a torch built with oneDNN")
    if requested == "int4" and not int4_available(device, dtype):
        raise ValueError("int4 linear needs a CPU, float32 weights and torch's int4 CPU matmul")
    if requested in ("int8", "w8a8") and not int8_available(device, dtype):
        raise ValueError(f"{requested} linear needs a CPU, float32 weights and a torch with oneDNN and int8 matmuls")
    if requested == "w8a8" and not int_mm_exact():
        raise ValueError("w8a8 needs exact int8 x int8 matmuls, which torch does not give on this CPU (no VNNI); "
                         "use --quantization int8 (weight-only)")
    log.info("linear backend: %s (device %s, %s)", requested, device, dtype)
    return requested


def linear_maker(backend: str, auto: bool):
    """What the model builds its matmuls with: ``make(weight, bias)``; with
    ``auto`` each matrix may take int4 (``auto_backend``). ``make.used``
    counts the backends, for the log."""
    used: dict[str, int] = {}

    def make(weight: torch.Tensor, bias: torch.Tensor | None = None) -> Linear:
        b, groups = _auto(backend, weight) if auto else (backend, None)
        used[b] = used.get(b, 0) + 1
        return Linear(weight, bias, b, int4=groups)

    make.used = used  # type: ignore[attr-defined]
    return make


def auto_backend(backend: str, weight: torch.Tensor) -> str:
    """--quantization auto: int4 for a matrix that is exactly 4-bit (a Q4_1
    GGUF's), else the backend chosen for the model (int8 on CPU)."""
    return _auto(backend, weight)[0]


def _auto(backend: str, weight: torch.Tensor):
    """``auto_backend`` and, for int4, the groups it found (packed without a second pass)."""
    if backend == "int8" and int4_available(str(weight.device), weight.dtype):
        groups = int4_groups(weight)
        if groups is not None:
            return "int4", groups
    return backend, None
