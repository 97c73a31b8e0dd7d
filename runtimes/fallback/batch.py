"""The explicit batch object a forward pass receives (no module globals).

Rows are tokens: decode tokens first (one per running sequence), then the
prefill chunks. No padding: every matmul computes only the rows it has.

``row_groups`` is set in batch-invariant mode only (``--batch-invariant``,
as vLLM's ``VLLM_BATCH_INVARIANT``): each decode row is a group and each
prefill chunk is a group, and every matmul and attention call runs once per
group. A sequence's rows then meet the same calls, with the same shapes and
the same data, whatever else is in the batch, so its bits cannot depend on
its neighbours on any CPU or BLAS. The default path batches the rows instead
and promises the same answers only to a tolerance.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

RowGroups = tuple[tuple[int, int, bool], ...]  # (start, end, wide): see linear.Linear


@dataclass(frozen=True)
class PrefillSegment:
    """``length`` prompt tokens starting at position ``start``, occupying rows
    ``row .. row+length`` of the batch. ``context_slots`` [start+length]: the
    cache positions of the whole context so far, for chunks that attend to a
    cached prefix (None when ``start`` is 0: the chunk is its own context)."""

    start: int
    length: int
    row: int
    context_slots: torch.Tensor | None


@dataclass(frozen=True)
class ForwardBatch:
    input_ids: torch.Tensor  # [T] int64
    positions: torch.Tensor  # [T] int64
    num_tokens: int
    slot_mapping: torch.Tensor  # [T] int64: cache position each row's K/V is written to
    # Decode part: rows 0 .. num_decode.
    decode_block_tables: torch.Tensor  # [B, max_blocks] int64 (unused entries 0)
    decode_seq_lens: torch.Tensor  # [B] int64, current token included
    decode_len_list: tuple[int, ...]
    prefill: tuple[PrefillSegment, ...]
    # Rows whose logits are needed (last token of each sequence that samples).
    logits_rows: torch.Tensor  # [N] int64
    # Batch-invariant mode: (start, end, wide) row ranges computed one call each.
    row_groups: RowGroups | None = None
    # LoRA: which rows run which adapter slot (lora.slots.LoraBatch); None when no row does.
    lora: Any = None

    @property
    def wide(self) -> bool:
        """Prompt rows present: matmuls take the fp32-activation path."""
        return bool(self.prefill)

    @property
    def num_decode(self) -> int:
        return len(self.decode_len_list)

    @property
    def num_logits(self) -> int:
        return int(self.logits_rows.shape[0])
