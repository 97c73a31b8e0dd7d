"""Continuous-batching scheduler. Pure Python: no torch import.

Every step carries one decode token for each sequence already generating, plus
at most ``prefill_chunk`` prompt tokens of sequences that are joining. Running
requests therefore always advance by one token per step and a burst of new
prompts only lengthens a step by a bounded amount (no starvation).

Prompts are cut at fixed positions (multiples of ``prefill_chunk`` after any
cached prefix) and a chunk is never split further to fill a step: a
sequence's prefill is then the same computation whatever else is running.

KV blocks come from the ``BlockManager``: a newcomer is admitted when a
sequence slot is free and its blocks can be reserved; a cached prefix is
mapped, not recomputed.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from .sequence import Sequence, Status
from .block_manager import BlockManager


@dataclass(frozen=True)
class PrefillChunk:
    seq: Sequence
    start: int
    length: int

    @property
    def completes_prompt(self) -> bool:
        return self.start + self.length == self.seq.prompt_len


@dataclass
class ScheduledStep:
    decode: list[Sequence] = field(default_factory=list)
    prefill: list[PrefillChunk] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.decode and not self.prefill


class Scheduler:
    def __init__(self, max_num_seqs: int, max_model_len: int, prefill_chunk: int, blocks: BlockManager,
                 max_loras: int = 0):
        self.max_num_seqs = max_num_seqs
        self.max_loras = max_loras  # distinct LoRA adapters the running batch may hold (the slots)
        self.blocks = blocks
        self.max_model_len = max_model_len
        self.prefill_chunk = prefill_chunk
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []  # have their blocks (prefilling or decoding)
        self._by_id: dict[str, Sequence] = {}

    # -- membership ---------------------------------------------------------
    def add(self, seq: Sequence) -> None:
        if seq.prompt_len == 0:
            raise ValueError("empty prompt")
        if seq.prompt_len >= self.max_model_len:
            raise ValueError(f"prompt of {seq.prompt_len} tokens leaves no room in max_model_len {self.max_model_len}")
        if self.blocks.blocks_for(self._total(seq)) > self.blocks.num_blocks:
            raise ValueError(
                f"prompt of {seq.prompt_len} tokens plus max_tokens {seq.max_tokens} needs more than the "
                f"{self.blocks.num_blocks * self.blocks.block_size} KV positions this server has"
            )
        if seq.request_id in self._by_id:
            raise ValueError(f"duplicate request id {seq.request_id}")
        seq.status = Status.WAITING
        self.waiting.append(seq)
        self._by_id[seq.request_id] = seq

    def finish(self, seq: Sequence, reason: str) -> None:
        """Remove a sequence (done, stopped or aborted) and free its blocks."""
        if seq.finished:
            return
        seq.status = Status.FINISHED
        seq.finish_reason = reason
        if seq.block_table is not None:
            self.blocks.free(seq.request_id)
            seq.block_table = None
        if seq in self.running:
            self.running.remove(seq)
        else:
            try:
                self.waiting.remove(seq)
            except ValueError:
                pass
        self._by_id.pop(seq.request_id, None)

    def abort(self, request_id: str) -> Sequence | None:
        seq = self._by_id.get(request_id)
        if seq is not None:
            self.finish(seq, "abort")
        return seq

    # -- the step -----------------------------------------------------------
    def schedule(self) -> ScheduledStep:
        step = ScheduledStep()
        for seq in self.running:
            if seq.status is Status.DECODING:
                self.blocks.ensure(seq.request_id, seq.num_computed + 1)
                step.decode.append(seq)
        budget = self.prefill_chunk
        # Sequences already part-way through their prompt go first (FIFO),
        # then newcomers while there is a sequence slot, blocks and budget.
        for seq in [s for s in self.running if s.status is Status.PREFILLING]:
            chunk = self._next_chunk(seq)
            if chunk.length > budget:
                return step
            self._take(step, chunk)
            budget -= chunk.length
        skipped: list[Sequence] = []  # waiting for a LoRA slot: later requests may pass them, as in vLLM
        while self.waiting and len(self.running) < self.max_num_seqs:
            seq = self.waiting[0]
            if not self._lora_fits(seq):
                skipped.append(self.waiting.popleft())
                continue
            salt = seq.cache_salt
            hit = self.blocks.match_prefix(seq.prompt_ids, salt) if seq.use_prefix_cache else []
            cached = len(hit) * self.blocks.block_size
            if min(self.prefill_chunk, seq.prompt_len - cached) > budget:
                break  # its first chunk waits whole for the next step
            if self.blocks.admit(seq.request_id, seq.prompt_ids, self._total(seq), hit, salt) is None:
                break  # blocks are short: wait for a sequence to finish
            self.waiting.popleft()
            seq.num_computed = cached
            seq.block_table = self.blocks.table(seq.request_id)
            seq.status = Status.PREFILLING
            self.running.append(seq)
            chunk = self._next_chunk(seq)
            self._take(step, chunk)
            budget -= chunk.length
        self.waiting.extendleft(reversed(skipped))
        return step

    def _lora_fits(self, seq: Sequence) -> bool:
        """Its adapter is already in the batch, or a slot is left for it."""
        if seq.lora is None:
            return True
        active = {s.lora.uid for s in self.running if s.lora is not None}
        return seq.lora.uid in active or len(active) < self.max_loras

    def _take(self, step: ScheduledStep, chunk: PrefillChunk) -> None:
        self.blocks.ensure(chunk.seq.request_id, chunk.start + chunk.length)
        step.prefill.append(chunk)

    def _total(self, seq: Sequence) -> int:
        """Positions a sequence may fill: its reservation."""
        return min(seq.prompt_len + seq.max_tokens, self.max_model_len)

    def _next_chunk(self, seq: Sequence) -> PrefillChunk:
        start = seq.num_computed
        return PrefillChunk(seq, start, min(self.prefill_chunk, seq.prompt_len - start))

    def advance(self, step: ScheduledStep) -> None:
        """Record that ``step`` ran: the cache now holds its tokens."""
        for seq in step.decode:
            seq.num_computed += 1
            self._register(seq)
        for chunk in step.prefill:
            chunk.seq.num_computed = chunk.start + chunk.length
            if chunk.completes_prompt:
                chunk.seq.status = Status.DECODING
            self._register(chunk.seq)

    def _register(self, seq: Sequence) -> None:
        # Called before this step's sampled token is appended, so prompt +
        # outputs are exactly the tokens whose K/V the cache now holds.
        if self.blocks.needs_register(seq.request_id, seq.num_computed):
            self.blocks.register(seq.request_id, seq.prompt_ids + seq.output_ids, seq.num_computed)

    # -- counters -----------------------------------------------------------
    @property
    def num_waiting(self) -> int:
        return len(self.waiting)

    @property
    def num_running(self) -> int:
        return len(self.running)

    def lora_names(self) -> tuple[list[str], list[str]]:
        """The adapters of the running and of the waiting sequences (vllm:lora_requests_info)."""
        def names(seqs) -> list[str]:
            return sorted({s.lora.name for s in seqs if s.lora is not None})

        return names(list(self.running)), names(list(self.waiting))

    def has_work(self) -> bool:
        return bool(self.waiting or self.running)
