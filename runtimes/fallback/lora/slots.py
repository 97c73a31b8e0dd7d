"""The active adapter slots and the LoRA delta of one batch (S-LoRA / Punica style).

``--max-loras`` slots hold the adapters the running batch uses, stacked per layer and per
fused linear of model.py (qkv, o, gate_up, down), padded to ``--max-lora-rank``:

    A[layer][group]: [slots, n_sub * R, in]    (q|k|v's A stacked along the rank)
    B[layer][group]: [slots, out, n_sub * R]   (block-diagonal: sub-module j's B, times its
                                                scale, in columns j*R .. j*R+r)

so one shrink and one expand matmul add every sub-module's delta. Padding and untargeted
modules are zeros: they add exact zeros, so a row's delta equals the unpadded
``scale * (x A^T) B^T`` and a zero adapter (B = 0) leaves the base output bit for bit.

``LoraBatch.apply`` is the segmented gather-matmul: the rows of each adapter are gathered,
multiplied by that slot's A then B, and added back in place. Rows of the base model are
not touched. In batch-invariant mode the segments are the batch's row groups (one
sequence each), so a row's delta comes from the same call whatever its neighbours.
"""

from __future__ import annotations

from dataclasses import dataclass

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
                b[group] = torch.zeros(num_slots, out, len(subs) * R, dtype=dtype, device=device)
            self.a.append(a)
            self.b.append(b)

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
                        b[row : row + out, j * R : j * R + r].copy_(wb)
                    row += out


@dataclass(frozen=True)
class LoraBatch:
    """Which rows of a ForwardBatch run which slot: ``segments`` of (slot, row indices)."""

    weights: SlotWeights
    segments: tuple[tuple[int, torch.Tensor], ...]

    def apply(self, layer: int, group: str, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``y += scale * (x A^T) B^T`` per row, for that row's adapter; returns ``y``."""
        a, b = self.weights.a[layer][group], self.weights.b[layer][group]
        for slot, rows in self.segments:
            xs = x.index_select(0, rows).to(a.dtype)
            delta = (xs @ a[slot].t()) @ b[slot].t()
            y.index_add_(0, rows, delta.to(y.dtype))
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
