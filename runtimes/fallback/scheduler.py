"""Continuous-batching scheduler. Pure Python: no torch import.

Every step carries one decode token for each sequence already generating, plus
at most ``prefill_chunk`` prompt tokens of sequences that are joining. Running
requests therefore always advance by one token per step and a burst of new
prompts only lengthens a step by a bounded amount (no starvation).

Prompts are cut at fixed positions (multiples of ``prefill_chunk``) and a
chunk is never split further to fill a step: a sequence's prefill is then the
same computation whatever else is running, which keeps greedy outputs
independent of the batch.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from .sequence import Sequence, Status
from .slots import SlotPool


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
    def __init__(self, max_num_seqs: int, max_model_len: int, prefill_chunk: int):
        self.slots = SlotPool(max_num_seqs)
        self.max_model_len = max_model_len
        self.prefill_chunk = prefill_chunk
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []  # have a slot (prefilling or decoding)
        self._by_id: dict[str, Sequence] = {}

    # -- membership ---------------------------------------------------------
    def add(self, seq: Sequence) -> None:
        if seq.prompt_len == 0:
            raise ValueError("empty prompt")
        if seq.prompt_len >= self.max_model_len:
            raise ValueError(f"prompt of {seq.prompt_len} tokens leaves no room in max_model_len {self.max_model_len}")
        if seq.request_id in self._by_id:
            raise ValueError(f"duplicate request id {seq.request_id}")
        seq.status = Status.WAITING
        self.waiting.append(seq)
        self._by_id[seq.request_id] = seq

    def finish(self, seq: Sequence, reason: str) -> None:
        """Remove a sequence (done, stopped or aborted) and free its slot."""
        if seq.finished:
            return
        seq.status = Status.FINISHED
        seq.finish_reason = reason
        if seq.slot is not None:
            self.slots.free(seq.slot)
            seq.slot = None
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
        step.decode = [s for s in self.running if s.status is Status.DECODING]
        budget = self.prefill_chunk
        # Sequences already part-way through their prompt go first (FIFO),
        # then newcomers while there is a free slot and budget.
        for seq in [s for s in self.running if s.status is Status.PREFILLING]:
            chunk = self._next_chunk(seq)
            if chunk.length > budget:
                return step
            step.prefill.append(chunk)
            budget -= chunk.length
        while self.waiting and self.slots.num_free:
            seq = self.waiting[0]
            chunk = self._next_chunk(seq)
            if chunk.length > budget:
                break
            self.waiting.popleft()
            seq.slot = self.slots.allocate()
            seq.status = Status.PREFILLING
            self.running.append(seq)
            step.prefill.append(chunk)
            budget -= chunk.length
        return step

    def _next_chunk(self, seq: Sequence) -> PrefillChunk:
        start = seq.num_computed
        return PrefillChunk(seq, start, min(self.prefill_chunk, seq.prompt_len - start))

    def advance(self, step: ScheduledStep) -> None:
        """Record that ``step`` ran: the cache now holds its tokens."""
        for seq in step.decode:
            seq.num_computed += 1
        for chunk in step.prefill:
            chunk.seq.num_computed = chunk.start + chunk.length
            if chunk.completes_prompt:
                chunk.seq.status = Status.DECODING

    # -- counters -----------------------------------------------------------
    @property
    def num_waiting(self) -> int:
        return len(self.waiting)

    @property
    def num_running(self) -> int:
        return len(self.running)

    def has_work(self) -> bool:
        return bool(self.waiting or self.running)
