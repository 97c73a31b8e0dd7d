"""OpenAI-compatible HTTP server of the fallback runtime (FastAPI + uvicorn).

Threads: uvicorn and the asyncio event loop run in a background thread
("http"); the model loads and the engine loop runs in the calling (main)
thread, where torch is fastest (see async_engine.py).

Lifecycle: the socket opens at once (liveness 200, readiness 503), the model
loads, then readiness turns 200. SIGTERM starts a drain: readiness and new
requests get 503, in-flight requests finish (or are aborted after
--drain-timeout), and the process exits 0.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import signal
import threading
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, AsyncIterator

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException

from .args import parse_args
from .async_engine import AsyncEngine, QueueFull, RequestStream
from .engine import RequestOutput
from .metrics import Metrics
from .protocol import APIError, ChatRequest, CompletionRequest, error_response, parse

log = logging.getLogger("runtimes.fallback.server")


@dataclass
class ServerState:
    args: Any
    names: list[str]
    metrics: Metrics
    engine: AsyncEngine | None = None
    tokenizer: Any = None
    max_model_len: int = 0
    ready: bool = False
    draining: bool = False
    load_error: str | None = None
    server: uvicorn.Server | None = None
    loop: asyncio.AbstractEventLoop | None = None
    loop_ready: threading.Event = field(default_factory=threading.Event)
    stopping: bool = False  # a signal arrived before the engine was serving
    created: int = field(default_factory=lambda: int(time.time()))
    fingerprint: str = ""


def _fingerprint(args: Any) -> str:
    """OpenAI's ``system_fingerprint``: names the backend configuration that,
    with a seed, decides the output (model file, dtype, device, kernels)."""
    from pathlib import Path

    key = "|".join(str(x) for x in (Path(args.model).name, args.dtype, args.device, args.kernels, args.seed))
    return "fp_" + hashlib.sha256(key.encode()).hexdigest()[:10]


@dataclass(frozen=True)
class _Head:
    """The fields that every response body and chunk of one request carries."""

    id: str
    model: str
    system_fingerprint: str
    created: int = field(default_factory=lambda: int(time.time()))  # when the request came

    def body(self, obj: str, **rest: Any) -> dict:
        return {"id": self.id, "object": obj, "created": self.created, "model": self.model,
                "system_fingerprint": self.system_fingerprint, **rest}


# -- loading ----------------------------------------------------------------
def _load(state: ServerState) -> tuple[Any, Any, int]:
    import torch

    from .config import EngineConfig
    from .factory import create_engine
    from runtimes.digests import verify_digests

    from .loader import ModelSource, load, parse_sha256_args
    from .sampling import SamplingParams

    a = state.args
    if a.num_threads:
        torch.set_num_threads(a.num_threads)
    digests = parse_sha256_args(a.sha256)
    if digests:
        verify_digests(ModelSource.resolve(a.model).directory, digests)
    t0 = time.monotonic()
    loaded = load(a.model, a.tokenizer, a.dtype)
    max_len = a.max_model_len or min(loaded.config.max_position_embeddings, 4096)
    chunk = (a.max_num_batched_tokens - a.max_num_seqs) if a.max_num_batched_tokens else 256
    cfg = EngineConfig(max_num_seqs=a.max_num_seqs, max_model_len=max_len, prefill_chunk=chunk,
                       max_queue_len=a.max_queue_len, seed=a.seed)
    engine = create_engine(loaded, cfg, a.dtype, a.device, a.kernels)
    # Warm-up: the first forward pays one-off costs (allocator, kernel init).
    engine.add_request("warmup", [loaded.tokenizer.eos_token_id or 0] * 4, SamplingParams(max_tokens=2, temperature=0))
    while engine.has_work():
        engine.step()
    log.info("model loaded in %.1f s", time.monotonic() - t0)
    return engine, loaded.tokenizer, max_len


# -- draining ---------------------------------------------------------------
async def drain(state: ServerState) -> None:
    deadline = time.monotonic() + state.args.drain_timeout
    eng = state.engine
    while eng is not None and eng.num_in_flight and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    if eng is not None and eng.num_in_flight:
        log.warning("drain timeout: aborting %d requests", eng.num_in_flight)
        eng.abort_all()
        for _ in range(40):  # let aborted responses finish writing
            if not eng.num_in_flight:
                break
            await asyncio.sleep(0.05)
    if state.server is not None:
        state.server.should_exit = True


def _on_signal(state: ServerState, sig: int) -> None:
    """SIGTERM/SIGINT (main thread): drain once; a second signal, or one
    before the model is serving, stops at once."""
    if state.draining or not state.ready:
        log.info("signal %s: stopping now", sig)
        state.stopping = True
        if state.engine is not None:
            state.engine.abort_all()
        if state.server is not None:
            state.server.should_exit = True
        return
    log.info("signal %s: draining (timeout %.0f s)", sig, state.args.drain_timeout)
    state.draining = True
    assert state.loop is not None
    state.loop.call_soon_threadsafe(lambda: asyncio.ensure_future(drain(state)))


# -- the app ----------------------------------------------------------------
def build_app(state: ServerState) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        state.loop = asyncio.get_running_loop()
        state.loop_ready.set()
        yield

    app = FastAPI(title="packager fallback runtime", lifespan=lifespan)

    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError):
        return error_response(exc)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException):
        # Unknown routes and methods get OpenAI's error body, not FastAPI's {"detail": ...}.
        return error_response(APIError(exc.status_code, str(exc.detail), headers=dict(exc.headers or {})))

    @app.get("/v1/health/live")
    async def live():
        return {"status": "live"}

    @app.get("/v1/health/ready")
    @app.get("/health")
    async def ready():
        if state.ready and not state.draining:
            return {"status": "ready"}
        why = "draining" if state.draining else ("load failed: " + state.load_error if state.load_error else "loading")
        return JSONResponse({"status": why}, status_code=503)

    @app.get("/metrics")
    async def metrics():
        return Response(state.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/v1/models")
    async def models():
        data = [
            {"id": n, "object": "model", "created": state.created, "owned_by": "packager",
             "root": state.args.model, "max_model_len": state.max_model_len or None}
            for n in state.names
        ]
        return {"object": "list", "data": data}

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        req = parse(ChatRequest, await _json(request))
        _check(state, req.model)
        messages = [{"role": m.role, "content": m.text()} for m in req.messages]
        try:
            text = state.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        except Exception as e:  # template errors (e.g. role order) are the caller's
            raise APIError(400, f"chat template failed: {e}", "messages") from None
        ids = state.tokenizer.encode(text, add_special_tokens=False)
        return await _serve(state, request, req, ids, chat=True)

    @app.post("/v1/completions")
    async def completions(request: Request):
        req = parse(CompletionRequest, await _json(request))
        _check(state, req.model)
        p = req.prompt  # one string or one list of token ids (see protocol)
        if isinstance(p, list):
            vocab = len(state.tokenizer)
            if any(t < 0 or t >= vocab for t in p):
                raise APIError(400, f"prompt token ids must be in [0, {vocab})", "prompt")
            ids = list(p)
        else:
            ids = state.tokenizer.encode(p)
        return await _serve(state, request, req, ids, chat=False)

    return app


async def _json(request: Request) -> Any:
    try:
        return json.loads(await request.body())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise APIError(400, f"malformed JSON body: {e}") from None


def _check(state: ServerState, model: str | None) -> None:
    if state.draining:
        raise APIError(503, "server is shutting down", headers={"Retry-After": "5"})
    if not state.ready:
        raise APIError(503, "model is loading", headers={"Retry-After": "5"})
    if model is not None and model not in state.names:
        raise APIError(404, f"The model `{model}` does not exist.", "model")


async def _serve(state: ServerState, request: Request, req, ids: list[int], chat: bool):
    n = len(ids)
    limit = state.max_model_len
    if n == 0:
        raise APIError(400, "prompt is empty", "prompt" if not chat else "messages")
    if n >= limit:
        raise APIError(400, f"This model's maximum context length is {limit} tokens. However, your prompt has {n} tokens.",
                       "messages" if chat else "prompt")
    want = req.requested_max_tokens
    if want is not None and n + want > limit:
        raise APIError(400, f"This model's maximum context length is {limit} tokens. However, you requested "
                            f"{n + want} tokens ({n} in the prompt, {want} for the completion).", req.max_tokens_param)
    params = req.sampling_params(want or req.default_max_tokens(limit - n))
    rid = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex
    try:
        stream = state.engine.add(rid, ids, params)
    except QueueFull:
        raise APIError(429, "too many requests waiting; retry later", headers={"Retry-After": "1"}) from None
    head = _Head(rid, req.model or state.names[0], state.fingerprint)
    outputs = _outputs(stream, request)
    if req.stream:
        return StreamingResponse(_sse(outputs, head, chat, req.include_usage),
                                 media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
    return await _collect(outputs, head, chat)


async def _outputs(stream: RequestStream, request: Request) -> AsyncIterator[RequestOutput]:
    """The request's outputs; ends early, aborting the request and freeing
    its slot, when the client disconnects (checked while waiting, and at
    least every second while tokens flow)."""
    last_check = time.monotonic()
    try:
        while True:
            out = await stream.next(timeout=0.5)
            if out is None or time.monotonic() - last_check > 1.0:
                last_check = time.monotonic()
                if await request.is_disconnected():
                    log.info("client gone: aborting %s", stream.request_id)
                    return
            if out is None:
                continue
            yield out
            if out.finished:
                return
    finally:
        stream.close()


def _usage(out: RequestOutput) -> dict:
    return {"prompt_tokens": out.prompt_tokens, "completion_tokens": out.completion_tokens,
            "total_tokens": out.prompt_tokens + out.completion_tokens}


async def _collect(outputs: AsyncIterator[RequestOutput], head: _Head, chat: bool):
    parts: list[str] = []
    last: RequestOutput | None = None
    try:
        async for out in outputs:
            parts.append(out.text)
            last = out
    except ValueError as e:  # the engine refused the request
        raise APIError(400, str(e)) from None
    except RuntimeError as e:  # an engine step failed; the engine keeps serving
        raise APIError(500, str(e)) from None
    if last is None or not last.finished:
        return Response(status_code=499)  # client gone; nobody reads this
    text = "".join(parts)
    if chat:
        choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": last.finish_reason, "logprobs": None}
        return head.body("chat.completion", choices=[choice], usage=_usage(last))
    choice = {"index": 0, "text": text, "finish_reason": last.finish_reason, "logprobs": None}
    return head.body("text_completion", choices=[choice], usage=_usage(last))


async def _sse(outputs: AsyncIterator[RequestOutput], head: _Head, chat: bool, include_usage: bool):
    obj = "chat.completion.chunk" if chat else "text_completion"

    def event(body: dict) -> str:
        return "data: " + json.dumps(body) + "\n\n"

    def chunk(text: str | None, finish: str | None, role: bool = False) -> str:
        if chat:
            delta: dict = {"role": "assistant", "content": ""} if role else ({"content": text} if text else {})
            choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
        else:
            choice = {"index": 0, "text": text or "", "finish_reason": finish, "logprobs": None}
        return event(head.body(obj, choices=[choice]))

    try:
        if chat:
            yield chunk(None, None, role=True)
        last = None
        async for out in outputs:
            last = out
            if out.text or out.finished:
                yield chunk(out.text, out.finish_reason if out.finished else None)
        if last is None or not last.finished:
            return  # client gone
        if include_usage:
            yield event(head.body(obj, choices=[], usage=_usage(last)))
        yield "data: [DONE]\n\n"
    except Exception as e:  # headers are sent: report in-band, as OpenAI does
        log.exception("stream %s failed", head.id)
        yield event({"error": {"message": str(e), "type": "InternalServerError", "param": None, "code": 500}})
    finally:
        await outputs.aclose()


# -- entry points -----------------------------------------------------------
def main(argv: list[str]) -> int:
    """Serve until SIGTERM/SIGINT; returns the process exit code (0 after a
    drain, 1 if the model cannot be loaded). Also the in-process entry point
    for ``packager serve``; signals are handled when called from the main
    thread."""
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    names = args.served_model_name or [args.model]
    state = ServerState(args=args, names=names, metrics=Metrics(names[0]), fingerprint=_fingerprint(args))
    config = uvicorn.Config(build_app(state), host=args.host, port=args.port, log_level=args.log_level,
                            timeout_graceful_shutdown=5, access_log=False)
    server = uvicorn.Server(config)
    state.server = server
    http = threading.Thread(target=server.run, name="http", daemon=True)
    http.start()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda signum, frame: _on_signal(state, signum))
    try:
        return _serve_engine(state, http)
    finally:
        server.should_exit = True
        http.join(timeout=30)


def _serve_engine(state: ServerState, http: threading.Thread) -> int:
    try:
        engine, tok, max_len = _load(state)
    except Exception as e:  # a bad model or digest: say why and exit non-zero
        log.error("loading the model failed: %s", e)
        state.load_error = str(e)
        return 1
    if state.stopping:
        return 0
    # Wait for the socket: uvicorn sets ``started`` once it listens, and its
    # thread ends early if it cannot (port in use).
    while not (state.loop_ready.is_set() and state.server.started):
        if not http.is_alive():
            log.error("the HTTP server did not start")
            return 1
        time.sleep(0.05)
    state.engine = AsyncEngine(engine, state.args.max_queue_len, on_step=state.metrics.record_step)
    state.engine.attach(state.loop)
    state.tokenizer, state.max_model_len = tok, max_len
    state.ready = True
    log.info("ready: serving %s on http://%s:%d", ", ".join(state.names), state.args.host, state.args.port)
    # The engine loop runs here until the HTTP server has exited (drained).
    watcher = threading.Thread(target=lambda: (http.join(), state.engine.stop()), name="http-watch", daemon=True)
    watcher.start()
    state.engine.run()
    return 0
