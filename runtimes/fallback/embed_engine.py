"""The embedding engine: requests' sequences, batched across requests up to a token budget, through
the encoder and the pooler; results handed back to asyncio.

Like async_engine.py, the loop runs in the main thread (OpenMP is slower from other threads here)
and the event loop only enqueues; no KV cache, so a step is one whole forward and a request is done
when its last sequence is. Each step takes sequences in arrival order until the next would pass
`max_batched_tokens` (one sequence longer than that still runs, alone).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

import torch

from .encoder import BertEncoder
from .pooling import PoolingConfig, pool

log = logging.getLogger(__name__)


class QueueFull(Exception):
    pass


@dataclass
class _Job:
    seqs: list[list[int]]
    future: asyncio.Future
    arrived: float
    out: list[torch.Tensor | None] = field(default_factory=list)
    left: int = 0
    aborted: bool = False


@dataclass(frozen=True)
class EmbedStats:
    """One step, for the metrics (vLLM's names): prompt tokens, finished requests' latencies."""

    prompt_tokens: int
    e2e: tuple[float, ...]
    running: int
    waiting: int


class EmbedEngine:
    def __init__(self, encoder: BertEncoder, pooling: PoolingConfig, max_batched_tokens: int, max_queue_len: int,
                 on_step: Callable[[EmbedStats], None] | None = None):
        self.encoder, self.pooling = encoder, pooling
        self.max_batched_tokens = max_batched_tokens
        self.max_queue_len = max_queue_len
        self.on_step = on_step
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop = threading.Event()
        self._jobs: set[int] = set()  # id() of jobs in flight, counted on the event-loop side

    @property
    def dim(self) -> int:
        return self.encoder.cfg.hidden_size

    def embed_now(self, seqs: list[list[int]]) -> torch.Tensor:
        """One forward over `seqs`, in the calling thread (warm-up, benchmarks)."""
        lengths = [len(s) for s in seqs]
        hidden = self.encoder.forward(torch.tensor([t for s in seqs for t in s]), lengths)
        return pool(hidden, lengths, self.pooling)

    # -- the event-loop side ------------------------------------------------
    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    @property
    def num_in_flight(self) -> int:
        return len(self._jobs)

    async def embed(self, seqs: list[list[int]]) -> torch.Tensor:
        """[len(seqs), dim] pooled vectors; QueueFull when too many requests wait."""
        if len(self._jobs) >= self.max_queue_len:
            raise QueueFull()
        job = _Job(seqs, asyncio.get_running_loop().create_future(), time.monotonic())
        self._jobs.add(id(job))
        try:
            self._inbox.put(job)
            return await job.future
        finally:
            job.aborted = True  # a client that left: its sequences not yet run are skipped
            self._jobs.discard(id(job))

    def abort_all(self) -> None:
        self._inbox.put("abort")

    def stop(self) -> None:
        self._stop.set()
        self._inbox.put("wake")

    # -- the engine thread --------------------------------------------------
    def run(self) -> None:
        pending: deque[tuple[_Job, int]] = deque()
        while not self._stop.is_set():
            try:
                item = self._inbox.get(timeout=None if not pending else 0)
            except queue.Empty:
                item = None
            while item is not None:
                self._take(item, pending)
                try:
                    item = self._inbox.get_nowait()
                except queue.Empty:
                    item = None
            if pending:
                self._step(pending)

    def _take(self, item, pending: deque) -> None:
        if isinstance(item, _Job):
            item.out, item.left = [None] * len(item.seqs), len(item.seqs)
            pending.extend((item, i) for i in range(len(item.seqs)))
        elif item == "abort":
            for job in {id(j): j for j, _ in pending}.values():
                self._resolve(job, RuntimeError("aborted"))
            pending.clear()

    def _step(self, pending: deque) -> None:
        batch: list[tuple[_Job, int]] = []
        tokens = 0
        while pending:
            job, i = pending[0]
            if job.aborted:
                pending.popleft()
                continue
            n = len(job.seqs[i])
            if batch and tokens + n > self.max_batched_tokens:
                break
            batch.append(pending.popleft())
            tokens += n
        if not batch:
            return
        try:
            vectors = self.embed_now([job.seqs[i] for job, i in batch])
        except Exception as e:  # a bug fails this batch's requests, not the server
            log.exception("embedding forward failed")
            for job in {id(j): j for j, _ in batch}.values():
                self._resolve(job, e)
            return
        done = []
        for row, (job, i) in enumerate(batch):
            job.out[i] = vectors[row]
            job.left -= 1
            if job.left == 0:
                done.append(job)
        now = time.monotonic()
        for job in done:
            self._resolve(job, torch.stack(job.out))  # type: ignore[arg-type]
        if self.on_step:
            jobs = {id(j): j for j, _ in pending}.values()
            running = sum(1 for j in jobs if j.left < len(j.seqs))  # partly embedded; the rest wait
            self.on_step(EmbedStats(tokens, tuple(now - j.arrived for j in done), running, len(jobs) - running))

    def _resolve(self, job: _Job, result) -> None:
        def settle() -> None:
            if job.future.done():
                return
            if isinstance(result, BaseException):
                job.future.set_exception(result)
            else:
                job.future.set_result(result)

        assert self._loop is not None
        self._loop.call_soon_threadsafe(settle)
