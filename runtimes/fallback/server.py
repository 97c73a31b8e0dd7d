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
import gc
import hashlib
import logging
import os
import signal
import sys
import threading
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from runtimes.api_keys import resolve_keys

from .args import parse_args
from .async_engine import AsyncEngine
from .choices import TokenText
from .limits import Guard, Limits, header_deadline_protocol
from .metrics import Metrics
from .prepare import Preparer
from .protocol import APIError, ChatRequest, CompletionRequest, error_response
from .respond import check, serve, unknown_model
from . import embed_routes, task as tasks
from runtimes import ready

log = logging.getLogger("runtimes.fallback.server")
STARTED = time.time()  # this process's start, for "ready in N s" when no launcher handed one over


@dataclass
class ServerState:
    args: Any
    names: list[str]
    metrics: Metrics
    engine: AsyncEngine | None = None
    tokenizer: Any = None
    preparer: Preparer | None = None
    words: Any = None  # choices.TokenText: token ids as logprobs show them
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
    task: str = "generate"  # or "embed": decided from the model's files (task.py)
    embed: Any = None  # embed_routes.Embedder, once an embedding model is loaded
    lora: Any = None  # lora.routes.LoraService when --enable-lora


def _fingerprint(args: Any) -> str:
    """OpenAI's ``system_fingerprint``: names the backend configuration that,
    with a seed, decides the output (model file, dtype, device, kernels)."""
    from pathlib import Path

    key = "|".join(str(x) for x in (Path(args.model).name, args.dtype, args.device, args.kernels, args.seed,
                                    args.quantization, args.batch_invariant))
    return "fp_" + hashlib.sha256(key.encode()).hexdigest()[:10]


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
                       max_queue_len=a.max_queue_len, seed=a.seed, batch_invariant=a.batch_invariant,
                       block_size=a.block_size, num_blocks=a.num_gpu_blocks_override,
                       enable_prefix_caching=a.enable_prefix_caching)
    quant = None if a.quantization == "none" else a.quantization
    lora = None
    if a.enable_lora:
        from .lora.manager import LoraConfig

        lora = LoraConfig(a.max_loras, a.max_lora_rank, a.max_cpu_loras)
    engine = create_engine(loaded, cfg, a.dtype, a.device, a.kernels, quantization=quant, lora=lora)
    if lora is not None:
        from .lora.routes import start

        state.lora = start(engine.lora, a, state.names)
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

    # /docs and /openapi.json are off unless asked for: no public API browser.
    docs = bool(state.args.enable_docs)
    app = FastAPI(title="packager fallback runtime", lifespan=lifespan, docs_url="/docs" if docs else None,
                  redoc_url=None, openapi_url="/openapi.json" if docs else None)

    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError):
        return error_response(exc)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException):
        # Unknown routes and methods get OpenAI's error body, not FastAPI's {"detail": ...}.
        return error_response(APIError(exc.status_code, str(exc.detail), headers=dict(exc.headers or {})))

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception):
        # A bug must still answer with OpenAI's JSON body, not a plain-text 500.
        log.exception("request failed")
        return error_response(APIError(500, "internal error"))

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
        if state.lora is not None and state.engine is not None:
            state.metrics.record_lora(state.args.max_loras, *state.engine.lora_names())
        return Response(state.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    def model_card(n: str) -> dict:
        # "root" is the served name: the model file's host path is nobody's business.
        return {"id": n, "object": "model", "created": state.created, "owned_by": "packager",
                "root": n, "max_model_len": state.max_model_len or None}

    def lora_cards() -> list[dict]:  # adapters, each with "parent" = the base (vLLM's listing)
        return [] if state.lora is None else state.lora.cards(state.created, state.max_model_len or None)

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [model_card(n) for n in state.names] + lora_cards()}

    @app.get("/v1/models/{model_id:path}")
    async def model(model_id: str):
        card = next((c for c in lora_cards() if c["id"] == model_id), None)
        if model_id not in state.names and card is None:
            raise unknown_model(state.names, model_id)
        return card or model_card(model_id)

    if state.args.enable_lora:
        from .lora.routes import add_routes

        add_routes(app, state)

    @app.post("/v1/chat/completions", openapi_extra=_body_schema(ChatRequest))
    async def chat(request: Request):
        return await _endpoint(state, request, chat=True)

    @app.post("/v1/completions", openapi_extra=_body_schema(CompletionRequest))
    async def completions(request: Request):
        return await _endpoint(state, request, chat=False)

    embed_routes.add_routes(app, state)
    if state.args.enable_docs:
        app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


async def _endpoint(state: ServerState, request: Request, chat: bool):
    tasks.refuse_other_task(state, tasks.GENERATE, "Chat Completions API" if chat else "Completions API")
    check(state, None)  # loading or draining: say so before any work
    body = await request.body()
    prep = state.preparer
    req, prompts = await prep.run(prep.chat if chat else prep.completion, body)
    check(state, req.model)
    await prep.constrain(req)
    return await serve(state, request, req, prompts, chat=chat)


def _body_schema(model: type) -> dict:
    """The request body's real JSON schema, so the OpenAPI document (with
    --enable-docs) lets schemathesis and client generators build bodies;
    the handler reads the raw body itself (see prepare.py)."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def _openapi(app: FastAPI) -> dict:
    """FastAPI's document with the request models' $defs moved to components."""
    if app.openapi_schema is None:
        from fastapi.openapi.utils import get_openapi

        doc = get_openapi(title=app.title, version=app.version, routes=app.routes)
        comps = doc.setdefault("components", {}).setdefault("schemas", {})
        for item in doc.get("paths", {}).values():
            for op in item.values():
                schema = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
                comps.update(schema.pop("$defs", {}))
        app.openapi_schema = doc
    return app.openapi_schema


# -- entry points -----------------------------------------------------------
def main(argv: list[str]) -> int:
    """Serve until SIGTERM/SIGINT; returns the process exit code (0 after a
    drain, 1 if the model cannot be loaded). Also the in-process entry point
    for ``packager serve``; signals are handled when called from the main
    thread."""
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    names = args.served_model_name or [args.model]
    state = ServerState(args=args, names=names, metrics=Metrics(names[0]), fingerprint=_fingerprint(args),
                        task=tasks.model_task(args.model))
    limits = Limits(keys=resolve_keys(args.api_key), max_body=args.max_request_body, body_timeout=args.body_read_timeout)
    log.info("API key %s", "required on every path but the probes and /metrics" if limits.keys
             else "not set: every path is open")
    config = uvicorn.Config(Guard(build_app(state), limits), host=args.host, port=args.port, log_level=args.log_level,
                            http=header_deadline_protocol(args.body_read_timeout),
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
        if state.preparer is not None:
            state.preparer.close()  # the grammar worker


def http_listening(state: Any, http: threading.Thread) -> bool:
    """Wait for the socket: uvicorn sets ``started`` once it listens, and its thread ends early
    if it cannot (port in use). False (logged) when it never listens."""
    while not (state.loop_ready.is_set() and state.server.started):
        if not http.is_alive():
            log.error("the HTTP server did not start")
            return False
        time.sleep(0.05)
    return True


def _serve_engine(state: ServerState, http: threading.Thread) -> int:
    if state.task == tasks.EMBED:
        from .embed_serve import serve as serve_embeddings

        return serve_embeddings(state, http, STARTED)
    try:
        engine, tok, max_len = _load(state)
    except Exception as e:  # a bad model or digest: say why and exit non-zero
        log.error("loading the model failed: %s", e)
        state.load_error = str(e)
        return 1
    if state.stopping:
        return 0
    if not http_listening(state, http):
        return 1
    state.metrics.record_cache_config(engine.cfg.block_size, engine.cfg.kv_blocks, state.args.kv_cache_dtype,
                                      engine.cfg.enable_prefix_caching)
    state.engine = AsyncEngine(engine, state.args.max_queue_len, on_step=state.metrics.record_step,
                               on_finish=state.metrics.record_finish)
    state.preparer = Preparer(tok, max_len, workers=state.args.tokenizer_workers,
                              model_vocab=engine.runner.vocab_size, stop_ids=engine.eos_token_ids,
                              compile_timeout=state.args.grammar_compile_timeout,
                              embedding_rows=engine.runner.embedding_rows)
    state.words = TokenText(tok)
    state.engine.attach(state.loop)
    state.tokenizer, state.max_model_len = tok, max_len
    # Everything loaded so far (torch, the model, the tokenizers) lives as long as the
    # process: freeze it out of the GC, whose full passes over it held the GIL ~200 ms
    # and stalled the event loop (live probe p99 190 ms vs 24 ms frozen, 8 busy clients).
    gc.collect()
    gc.freeze()
    state.ready = True
    log.info("ready: serving %s on http://%s:%d", ", ".join(state.names), state.args.host, state.args.port)
    endpoint = f"http://{state.args.host}:{state.args.port}"
    sys.stderr.write(ready.screen(list(state.names), endpoint, os.environ, STARTED) + "\n")
    sys.stderr.flush()
    # The engine loop runs here until the HTTP server has exited (drained).
    watcher = threading.Thread(target=lambda: (http.join(), state.engine.stop()), name="http-watch", daemon=True)
    watcher.start()
    state.engine.run()
    return 0
