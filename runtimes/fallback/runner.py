"""Model runner: turns a scheduled step into a ``ForwardBatch``, runs the
model and samples one token for each sequence that needs one."""

from __future__ import annotations

import torch

from .batch import ForwardBatch, PrefillSegment
from .kernels import Ops
from .kv_cache import KVCache
from .sampling import logprob_entry, sample_batch
from .scheduler import ScheduledStep
from .sequence import Sequence


class ModelRunner:
    def __init__(self, model: torch.nn.Module, kv: KVCache, ops: Ops, device: str = "cpu", batch_invariant: bool = False,
                 lora=None):
        self.model = model
        self.lora = lora  # lora.manager.LoraManager: the adapter slots, or None
        self.kv = kv
        self.ops = ops
        self.device = device
        self.batch_invariant = batch_invariant

    @property
    def vocab_size(self) -> int:
        return self.model.cfg.vocab_size

    @property
    def embedding_rows(self) -> int:
        """The ids the model can embed: the embedding's rows, whatever its config says."""
        return int(self.model.embed.shape[0])

    def _slots(self, table: list[int], start: int, end: int) -> list[int]:
        bs = self.kv.block_size
        return [table[p // bs] * bs + p % bs for p in range(start, end)]

    def prepare(self, step: ScheduledStep) -> tuple[ForwardBatch, list[Sequence]]:
        """Rows: decode tokens, then prefill chunks. Returns the batch and the
        sequences that sample, in logits-row order. A sequence that wants
        prompt logprobs also gets logits for its other prompt rows, after
        the sampling rows (``self.prompt_rows`` says whose)."""
        ids: list[int] = []
        pos: list[int] = []
        slots: list[int] = []
        logits_rows: list[int] = []
        samplers: list[Sequence] = []
        extra_rows: list[int] = []
        self.prompt_rows: list[tuple[Sequence, int, int]] = []  # seq, first prompt position, rows
        dev = self.device
        for seq in step.decode:
            logits_rows.append(len(ids))
            samplers.append(seq)
            ids.append(seq.last_token)
            p = seq.num_computed
            pos.append(p)
            slots.extend(self._slots(seq.block_table, p, p + 1))
        segments = []
        for chunk in step.prefill:
            seq = chunk.seq
            row = len(ids)
            end = chunk.start + chunk.length
            ids.extend(seq.prompt_ids[chunk.start : end])
            pos.extend(range(chunk.start, end))
            slots.extend(self._slots(seq.block_table, chunk.start, end))
            ctx = None
            if chunk.start:
                ctx = torch.tensor(self._slots(seq.block_table, 0, end), dtype=torch.long, device=dev)
            segments.append(PrefillSegment(chunk.start, chunk.length, row, ctx))
            if seq.extra is not None and seq.extra.prompt_logprobs is not None:
                # Row of position p predicts prompt token p+1; the prompt's last
                # row predicts the first output token (the sampling row).
                n = chunk.length - 1 if chunk.completes_prompt else chunk.length
                if n:
                    self.prompt_rows.append((seq, chunk.start, n))
                    extra_rows.extend(range(row, row + n))
            if chunk.completes_prompt:
                logits_rows.append(len(ids) - 1)
                samplers.append(seq)
        groups = None
        if self.batch_invariant:
            groups = tuple((i, i + 1, False) for i in range(len(step.decode)))
            groups += tuple((seg.row, seg.row + seg.length, True) for seg in segments)
        lens = [s.num_computed + 1 for s in step.decode]
        width = max((len(s.block_table) for s in step.decode), default=0)
        # Padded with each sequence's own last block: attention reads (and
        # masks out) only the sequence's own, finite K/V.
        tables = [s.block_table + s.block_table[-1:] * (width - len(s.block_table)) for s in step.decode]
        batch = ForwardBatch(
            input_ids=torch.tensor(ids, dtype=torch.long, device=dev),
            positions=torch.tensor(pos, dtype=torch.long, device=dev),
            num_tokens=len(ids),
            slot_mapping=torch.tensor(slots, dtype=torch.long, device=dev),
            decode_block_tables=torch.tensor(tables, dtype=torch.long, device=dev).view(len(tables), width),
            decode_seq_lens=torch.tensor(lens, dtype=torch.long, device=dev),
            decode_len_list=tuple(lens),
            prefill=tuple(segments),
            logits_rows=torch.tensor(logits_rows + extra_rows, dtype=torch.long, device=dev),
            row_groups=groups,
            lora=self._lora_batch(step, len(ids), groups),
        )
        return batch, samplers

    def _lora_batch(self, step: ScheduledStep, num_rows: int, groups):
        """Each row's adapter slot (rows in ``prepare``'s order), or None when no row has one."""
        seqs = list(step.decode) + [c.seq for c in step.prefill]
        if self.lora is None or all(s.lora is None for s in seqs):
            return None
        from .lora.slots import LoraBatch, onehot_for, segments_for

        slot_of = self.lora.activate([s.lora for s in seqs if s.lora is not None])
        rows = [-1 if s.lora is None else slot_of[s.lora.uid] for s in step.decode]
        for c in step.prefill:
            rows += [-1 if c.seq.lora is None else slot_of[c.seq.lora.uid]] * c.length
        assert len(rows) == num_rows
        w = self.lora.slots
        if groups is not None:  # batch-invariant: one call per sequence
            return LoraBatch(w, segments_for(rows, groups, self.device))
        if str(self.device).startswith("cuda"):  # Punica-style BGMV kernels (lora/triton_bgmv.py)
            return LoraBatch(w, (), row_slots=torch.tensor(rows, dtype=torch.int32, device=self.device))
        return LoraBatch(w, (), onehot_for(rows, w.num_slots, w.a[0]["o"].dtype, self.device))

    @torch.inference_mode()
    def run(self, step: ScheduledStep) -> tuple[list[Sequence], list[int]]:
        batch, seqs = self.prepare(step)
        logits = self.model(batch, self.kv, self.ops)
        if self.prompt_rows:
            self._prompt_logprobs(logits[len(seqs):])
            logits = logits[: len(seqs)]
        if not seqs:
            return seqs, []
        tokens = sample_batch(logits, [s.extra.sampler for s in seqs])
        return seqs, tokens

    def _prompt_logprobs(self, logits: torch.Tensor) -> None:
        at = 0
        for seq, start, n in self.prompt_rows:
            lp = torch.log_softmax(logits[at : at + n].float(), dim=-1)
            at += n
            k = seq.extra.params.prompt_logprobs or 0
            targets = seq.prompt_ids[start + 1 : start + 1 + n]
            for i, tok in enumerate(targets):
                seq.extra.prompt_logprobs.append(logprob_entry(lp[i], tok, k))
