"""Runs the engine loop in one thread and hands results to asyncio.

The HTTP event loop (another thread) only enqueues commands (add, abort) and
awaits a per-request ``asyncio.Queue``; the engine thread owns all engine
state, so no locks guard it. Torch ops release the GIL, so HTTP handling
continues while a step computes.

The server runs this loop in the process's main thread: on this CPU build,
OpenMP parallel regions started from other threads cost several microseconds
more each, which made every decode step ~40% slower (measured: 24 vs 34 ms
per step at batch 1).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from typing import Callable

from .engine import LLMEngine, RequestOutput, StepStats
from .sampling import SamplingParams, take_failures

log = logging.getLogger(__name__)


class QueueFull(Exception):
    pass


class AsyncEngine:
    def __init__(self, engine: LLMEngine, max_queue_len: int, on_step: Callable[[StepStats, int, int, float], None] | None = None,
                 on_finish: Callable[[str], None] | None = None):
        self.engine = engine
        self.max_queue_len = max_queue_len
        self.on_step = on_step
        # Finishes the engine's step stats do not carry ("abort", "error"),
        # counted as vLLM counts them: request_success{finished_reason=...}.
        self.on_finish = on_finish
        self._commands: queue.SimpleQueue = queue.SimpleQueue()
        self._streams: dict[str, asyncio.Queue] = {}
        # request id -> id() of its params (alive while the engine holds the
        # request): finds the request of a failed draw, to fail it alone.
        self._params: dict[str, int] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop = threading.Event()
        self._pending = 0  # adds sent to the thread but not yet scheduled there
        self._pending_lora: dict[str, int] = {}  # their adapters (name -> count): they wait too
        self._lock = threading.Lock()

    # -- lifecycle ----------------------------------------------------------
    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """The event loop that receives outputs; set before any request."""
        self._loop = loop

    def stop(self) -> None:
        self._stop.set()
        self._commands.put(("wake", None))

    # -- the event-loop side ------------------------------------------------
    @property
    def num_in_flight(self) -> int:
        return len(self._streams)

    def add(self, request_id: str, prompt_ids: list[int], params: SamplingParams) -> "RequestStream":
        """Queue a request; raises QueueFull when too many already wait."""
        with self._lock:
            # Requests that will wait once free slots are filled; a racy read
            # of the slot count is fine (it only moves the limit by a step).
            queued = self._pending + self.engine.num_waiting - self.engine.num_free_slots
            if queued >= self.max_queue_len:
                raise QueueFull()
            self._pending += 1
            if params.lora_name is not None:
                self._pending_lora[params.lora_name] = self._pending_lora.get(params.lora_name, 0) + 1
        q: asyncio.Queue = asyncio.Queue()
        self._streams[request_id] = q
        self._commands.put(("add", (request_id, prompt_ids, params, time.monotonic())))
        return RequestStream(self, request_id, q)

    def lora_names(self) -> tuple[list[str], list[str]]:
        """vllm:lora_requests_info's running and waiting adapters: waiting counts the requests still on
        their way to the engine thread (queued here, not yet in the scheduler) as vLLM counts its queue."""
        with self._lock:
            running, waiting = self.engine.scheduler.lora_names()
            return running, sorted(set(waiting) | set(self._pending_lora))

    def _close(self, request_id: str, finished: bool) -> None:
        self._streams.pop(request_id, None)
        if not finished:
            self._commands.put(("abort", request_id))

    def abort_all(self) -> None:
        for rid in list(self._streams):
            self._commands.put(("abort", rid))

    # -- the engine thread --------------------------------------------------
    def _deliver(self, items: list) -> None:
        for request_id, out in items:
            q = self._streams.get(request_id)
            if q is not None:
                q.put_nowait(out)

    def _post(self, request_id: str, out) -> None:
        self._post_many([(request_id, out)])

    def _post_many(self, items: list) -> None:
        # One wake-up of the event loop per step, not one per token.
        assert self._loop is not None
        if items:
            self._loop.call_soon_threadsafe(self._deliver, items)

    def _handle(self, cmd: str, arg) -> None:
        if cmd == "add":
            request_id, prompt_ids, params, arrival = arg
            # Under the lock: the queue-length check reads _pending and the
            # engine's waiting count together.
            with self._lock:
                self._pending -= 1
                if params.lora_name is not None:
                    left = self._pending_lora.pop(params.lora_name) - 1
                    if left:
                        self._pending_lora[params.lora_name] = left
                try:
                    self.engine.add_request(request_id, prompt_ids, params, arrival)
                    self._params[request_id] = id(params)
                    return
                except ValueError as e:  # the engine refused this request: a 400 for it alone
                    self._post(request_id, e)
                    return
                except Exception as e:  # preparing this request failed: it fails alone
                    log.exception("adding request %s failed", request_id)
                    self.engine.abort(request_id)
                    failure = e
            self._fail(request_id, failure)
        elif cmd == "abort":
            self._params.pop(arg, None)
            out = self.engine.abort(arg)
            if out is not None:
                self._post(arg, out)
                self._finished("abort")

    def _fail(self, request_id: str, e: BaseException) -> None:
        self._post(request_id, RuntimeError(f"engine error: {e}"))
        self._finished("error")

    def _fail_draws(self) -> None:
        for params, e in take_failures():
            rid = next((r for r, pid in self._params.items() if pid == id(params)), None)
            self._params.pop(rid, None)
            if rid is not None and self.engine.abort(rid) is not None:
                log.error("sampling for %s failed: %s", rid, e)
                self._fail(rid, e)

    def _finished(self, reason: str) -> None:
        if self.on_finish is not None:
            self.on_finish(reason)

    def run(self) -> None:
        """The engine loop; returns after ``stop()``. Call from the thread that
        should run the model (the main thread in the server)."""
        import torch

        with torch.inference_mode():
            while not self._stop.is_set():
                # Block only when idle; otherwise take what arrived and step.
                try:
                    if not self.engine.has_work():
                        cmd, arg = self._commands.get(timeout=0.5)
                        self._handle(cmd, arg)
                    while True:
                        cmd, arg = self._commands.get_nowait()
                        self._handle(cmd, arg)
                except queue.Empty:
                    pass
                if not self.engine.has_work():
                    self._report()
                    continue
                try:
                    outputs = self.engine.step()
                except BaseException as e:  # a bug or OOM: fail every request, keep serving
                    log.exception("engine step failed")
                    take_failures()
                    for rid in list(self._streams):
                        if self.engine.abort(rid) is not None:
                            self._finished("error")
                        self._post(rid, RuntimeError(f"engine error: {e}"))
                    self._params.clear()
                    continue
                failed = [out for out in outputs if out.finish_reason == "error"]
                for out in failed:
                    log.error("request %s failed: %s", out.request_id, out.error)
                    self._params.pop(out.request_id, None)
                    self._fail(out.request_id, RuntimeError(out.error))
                self._post_many([(out.request_id, out) for out in outputs if out.finish_reason != "error"])
                self._fail_draws()
                for out in outputs:
                    if out.finished:
                        self._params.pop(out.request_id, None)
                self._report(self.engine.last_stats)

    def _report(self, stats: StepStats | None = None) -> None:
        if self.on_step is not None:
            e = self.engine
            self.on_step(stats or StepStats(), e.num_running, e.num_waiting, e.kv_usage())


class RequestStream:
    """Outputs of one request. ``close()`` before the end aborts the request
    in the engine, which frees its KV slot."""

    def __init__(self, engine: AsyncEngine, request_id: str, q: asyncio.Queue):
        self.engine = engine
        self.request_id = request_id
        self._q = q
        self.finished = False
        self.closed = False

    async def next(self, timeout: float | None = None) -> RequestOutput | None:
        """The next output, or None if ``timeout`` passes first."""
        if not self._q.empty():
            out = self._q.get_nowait()  # fast path: no timer, no task
        else:
            try:
                out = await asyncio.wait_for(self._q.get(), timeout)
            except asyncio.TimeoutError:
                return None
        if isinstance(out, BaseException):
            self.close()
            raise out
        if out.finished:
            self.finished = True
            self.close()
        return out

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.engine._close(self.request_id, self.finished)
