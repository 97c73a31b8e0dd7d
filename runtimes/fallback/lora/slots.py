"""The active adapter slots and the LoRA delta of one batch (S-LoRA / Punica style).

``--max-loras`` slots hold the adapters the running batch uses, stacked per layer and per
fused linear of model.py (qkv, o, gate_up, down), padded to ``--max-lora-rank``:

    A[layer][group]: [slots, n_sub * R, in]    (q|k|v's A stacked along the rank)
    B[layer][group]: [slots, n_sub * R, out]   (B^T, block-diagonal: sub-module j's B times its
                                                scale in rows j*R .. j*R+r)

so one shrink and one expand matmul add every sub-module's delta. Padding and untargeted
modules are zeros: they add exact zeros, so a row's delta equals the unpadded
``scale * (x A^T) B^T`` and a zero adapter (B = 0) leaves the base output bit for bit.

``LoraBatch.apply`` has two paths, one answer:
- segmented gather-matmul (Punica's SGMV, the reference): the rows of each adapter are
  gathered, multiplied by that slot's A then B, and written back; in batch-invariant mode the
  segments are the batch's row groups (one sequence each), so a row's delta comes from the
  same call whatever its neighbours;
- dense (the default mode): every row times every slot's A in one matmul, the columns of other
  slots (and all of a base row's) zeroed by a one-hot mask, then one matmul by all slots' B.
  With 4 slots it wastes 3/4 of two small matmuls but skips the gathers and scatters, which
  cost more on a CPU: 3.5 ms vs 34 ms for gate_up at 16 rows, 4 adapters (contended 2 cores).
The masked columns add exact zeros, so a zero adapter or a base row is still bit for bit the
base output.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .adapter import FUSED, Adapter, Shapes


class SlotWeights:
    def __init__(self, shapes: Shapes, num_slots: int, max_rank: int, dtype: torch.dtype, device: str = "cpu"):
        self.shapes, self.num_slots, self.max_rank = shapes, num_slots, max_rank
        R = max_rank
        self.a: list[dict[str, torch.Tensor]] = []
        self.b: list[dict[str, torch.Tensor]] = []
        for _ in range(shapes.num_layers):
            a, b = {}, {}
            for group, subs in FUSED.items():
                d_in = shapes.dims[subs[0]][0]
                out = sum(shapes.dims[s][1] for s in subs)
                a[group] = torch.zeros(num_slots, len(subs) * R, d_in, dtype=dtype, device=device)
                b[group] = torch.zeros(num_slots, len(subs) * R, out, dtype=dtype, device=device)
            self.a.append(a)
            self.b.append(b)

        # The dense path's two matmuls through oneDNN on CPU fp32 (weights reordered once per slot
        # write; 0.56 vs 0.80 ms for gate_up at 16 rows, one thread): [slots*w, in] and [out, slots*w].
        from ..linear import onednn_available

        self.packed = onednn_available(device, dtype)
        self.pa: list[dict[str, torch.Tensor]] = [{} for _ in range(shapes.num_layers)]
        self.pb: list[dict[str, torch.Tensor]] = [{} for _ in range(shapes.num_layers)]
        self._repack()

    def _repack(self) -> None:
        if not self.packed:
            return
        reorder = torch.ops.mkldnn._reorder_linear_weight
        for layer in range(self.shapes.num_layers):
            for group, a in self.a[layer].items():
                s, w, d_in = a.shape
                self.pa[layer][group] = reorder(a.view(s * w, d_in), 16)
                self.pb[layer][group] = reorder(self.b[layer][group].view(s * w, -1).t().contiguous(), 16)

    def shrink_expand(self, layer: int, group: str, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``((x A_all^T) * mask) B_all``: every slot at once, other slots' columns zeroed."""
        a, b = self.a[layer][group], self.b[layer][group]
        s, w, d_in = a.shape
        if self.packed:
            lin = torch.ops.mkldnn._linear_pointwise
            t = lin(x, self.pa[layer][group], None, "none", [], "").mul_(mask)
            return lin(t, self.pb[layer][group], None, "none", [], "")
        return ((x @ a.view(s * w, d_in).t()).mul_(mask)) @ b.view(s * w, -1)

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for layer in self.a + self.b for t in layer.values())

    def write(self, slot: int, adapter: Adapter) -> None:
        """Copy ``adapter`` into ``slot`` (zeros wherever it has no weights)."""
        R = self.max_rank
        if adapter.rank > R:
            raise ValueError(f"adapter {adapter.name} has rank {adapter.rank} > --max-lora-rank {R}")
        for layer in range(self.shapes.num_layers):
            for group, subs in FUSED.items():
                a, b = self.a[layer][group][slot], self.b[layer][group][slot]
                a.zero_()
                b.zero_()
                row = 0
                for j, sub in enumerate(subs):
                    out = self.shapes.dims[sub][1]
                    w = adapter.weights.get((layer, sub))
                    if w is not None:
                        wa, wb = w
                        r = wa.shape[0]
                        a[j * R : j * R + r].copy_(wa)
                        b[j * R : j * R + r, row : row + out].copy_(wb.t())
                    row += out
        self._repack()


@dataclass(frozen=True)
class LoraBatch:
    """Which rows of a ForwardBatch run which slot: ``segments`` of (slot, row indices); with
    ``onehot`` [rows, slots] (1 where a row runs a slot) the dense path is taken."""

    weights: SlotWeights
    segments: tuple[tuple[int, torch.Tensor], ...]
    onehot: torch.Tensor | None = None
    row_slots: torch.Tensor | None = None  # [rows] int32, -1 = base: the Triton path (GPUs, triton_bgmv.py)
    _masks: dict = field(default_factory=dict, compare=False)

    def apply(self, layer: int, group: str, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``y += scale * (x A^T) B^T`` per row, for that row's adapter; returns ``y``."""
        a, b = self.weights.a[layer][group], self.weights.b[layer][group]
        if self.row_slots is not None:
            from .triton_bgmv import bgmv

            return bgmv(x, a, b, self.row_slots, y)
        if self.onehot is not None:
            slots, width, d_in = a.shape
            mask = self._masks.get(width)
            if mask is None:  # one per rank width (qkv 3R, gate_up 2R, o/down R), shared by the layers
                mask = self._masks[width] = self.onehot.repeat_interleave(width, dim=1)
            return y.add_(self.weights.shrink_expand(layer, group, x.to(a.dtype).contiguous(), mask).to(y.dtype))
        for slot, rows in self.segments:
            xs = x.index_select(0, rows).to(a.dtype)
            delta = (xs @ a[slot].t()) @ b[slot]
            y.index_copy_(0, rows, y.index_select(0, rows) + delta.to(y.dtype))  # rows are unique: no index_add_
        return y


def segments_for(row_slots: list[int], groups: tuple[tuple[int, int, bool], ...] | None,
                 device: str = "cpu") -> tuple[tuple[int, torch.Tensor], ...]:
    """Segments from each row's slot (-1: the base model). Without ``groups``, one segment
    per slot (all its rows in one matmul); with them, one per group (batch-invariant)."""
    if groups is not None:
        out = []
        for start, end, _ in groups:
            slot = row_slots[start]
            if slot >= 0:
                out.append((slot, torch.arange(start, end, device=device)))
        return tuple(out)
    by_slot: dict[int, list[int]] = {}
    for row, slot in enumerate(row_slots):
        if slot >= 0:
            by_slot.setdefault(slot, []).append(row)
    return tuple((s, torch.tensor(r, dtype=torch.long, device=device)) for s, r in sorted(by_slot.items()))


def onehot_for(row_slots: list[int], num_slots: int, dtype: torch.dtype, device: str = "cpu") -> torch.Tensor:
    """[rows, slots]: 1 where the row runs that slot; all zeros for a base-model row."""
    out = torch.zeros(len(row_slots), num_slots, dtype=dtype, device=device)
    for row, slot in enumerate(row_slots):
        if slot >= 0:
            out[row, slot] = 1
    return out
