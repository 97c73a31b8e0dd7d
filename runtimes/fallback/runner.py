"""Model runner: turns a scheduled step into a ``ForwardBatch``, runs the
model and samples one token for each sequence that needs one."""

from __future__ import annotations

import torch

from .batch import ForwardBatch, PrefillSegment
from .kernels import Ops
from .kv_cache import KVCache
from .sampling import sample_batch
from .scheduler import ScheduledStep
from .sequence import Sequence


class ModelRunner:
    def __init__(self, model: torch.nn.Module, kv: KVCache, ops: Ops, device: str = "cpu", batch_invariant: bool = False):
        self.model = model
        self.kv = kv
        self.ops = ops
        self.device = device
        self.batch_invariant = batch_invariant

    def prepare(self, step: ScheduledStep) -> tuple[ForwardBatch, list[Sequence]]:
        """Rows: decode tokens, then prefill chunks. Returns the batch and the
        sequences that sample, in logits-row order."""
        ids: list[int] = []
        pos: list[int] = []
        logits_rows: list[int] = []
        samplers: list[Sequence] = []
        for seq in step.decode:
            logits_rows.append(len(ids))
            samplers.append(seq)
            ids.append(seq.last_token)
            pos.append(seq.num_computed)
        segments = []
        for chunk in step.prefill:
            seq = chunk.seq
            row = len(ids)
            ids.extend(seq.prompt_ids[chunk.start : chunk.start + chunk.length])
            pos.extend(range(chunk.start, chunk.start + chunk.length))
            segments.append(PrefillSegment(seq.slot, chunk.start, chunk.length, row))
            if chunk.completes_prompt:
                logits_rows.append(len(ids) - 1)
                samplers.append(seq)
        n = len(ids)
        groups = None
        if self.batch_invariant:
            groups = tuple((i, i + 1) for i in range(len(step.decode)))
            groups += tuple((seg.row, seg.row + seg.length) for seg in segments)
        dev = self.device
        slots = [s.slot for s in step.decode]
        lens = [s.num_computed + 1 for s in step.decode]
        batch = ForwardBatch(
            input_ids=torch.tensor(ids, dtype=torch.long, device=dev),
            positions=torch.tensor(pos, dtype=torch.long, device=dev),
            num_tokens=n,
            decode_slots=torch.tensor(slots, dtype=torch.long, device=dev),
            decode_seq_lens=torch.tensor(lens, dtype=torch.long, device=dev),
            decode_slot_list=tuple(slots),
            decode_len_list=tuple(lens),
            prefill=tuple(segments),
            logits_rows=torch.tensor(logits_rows, dtype=torch.long, device=dev),
            row_groups=groups,
        )
        return batch, samplers

    @torch.inference_mode()
    def run(self, step: ScheduledStep) -> tuple[list[Sequence], list[int]]:
        batch, seqs = self.prepare(step)
        logits = self.model(batch, self.kv, self.ops)
        if not seqs:
            return seqs, []
        tokens = sample_batch(logits, [s.extra.sampler for s in seqs])
        return seqs, tokens
