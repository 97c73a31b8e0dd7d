"""The explicit batch object a forward pass receives (no module globals).

Rows are tokens. Decode tokens come first (one per running sequence), then the
prefill chunks, then padding rows up to a multiple of ``ROW_ALIGN``.

Why pad: MKL's fp32 GEMM computes a row with different kernels depending on
how many rows the matrix has (1, 2-3, or a full block), which changes the last
bits. With the row count always a multiple of 8, every row is computed by the
same kernel whatever else is in the batch, so a sequence's greedy output does
not depend on its neighbours (tests/runtime check this).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

ROW_ALIGN = 8
# Decode attention runs over the cached prefix padded to a multiple of this,
# for the same reason: the softmax and the probs @ V reductions give the same
# bits for a sequence whatever the longest sequence in the batch, as long as
# the padded length has no ragged tail (tests/runtime check this).
ATTN_LEN_ALIGN = 64


def padded(n: int) -> int:
    return max(ROW_ALIGN, -(-n // ROW_ALIGN) * ROW_ALIGN)


def attn_len(n: int) -> int:
    return -(-n // ATTN_LEN_ALIGN) * ATTN_LEN_ALIGN


@dataclass(frozen=True)
class PrefillSegment:
    """``length`` prompt tokens of the sequence in cache ``slot``, starting at
    position ``start``, occupying rows ``row .. row+length`` of the batch."""

    slot: int
    start: int
    length: int
    row: int


@dataclass(frozen=True)
class ForwardBatch:
    input_ids: torch.Tensor  # [T_pad] int64
    positions: torch.Tensor  # [T_pad] int64
    num_tokens: int  # real rows; rows past this are padding
    # Decode part: rows 0 .. num_decode.
    decode_slots: torch.Tensor  # [B] int64
    decode_seq_lens: torch.Tensor  # [B] int64, current token included
    decode_slot_list: tuple[int, ...]
    decode_len_list: tuple[int, ...]
    prefill: tuple[PrefillSegment, ...]
    # Rows whose logits are needed (last token of each sequence that samples).
    logits_rows: torch.Tensor  # [N] int64

    @property
    def num_decode(self) -> int:
        return len(self.decode_slot_list)

    @property
    def num_logits(self) -> int:
        return int(self.logits_rows.shape[0])
