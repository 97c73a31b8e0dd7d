"""Load an embedding model and run its engine loop: the `embed` branch of server.py's start.

`--model` is a sentence-transformers directory (config.json, *.safetensors, tokenizer.json,
modules.json) or a zip of one, unpacked once into the cache (runtimes/model_archive.py).
"""

from __future__ import annotations

import gc
import logging
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

from runtimes import ready
from runtimes.digests import verify_digests
from runtimes.model_archive import is_archive, unpacked

from .embed_engine import EmbedEngine, EmbedStats
from .embed_protocol import EmbedLimits
from .embed_routes import Embedder

log = logging.getLogger(__name__)
DEFAULT_BATCHED_TOKENS = 4096  # one forward; measured on the 2-core CPU: see bench/embeddings.py


def model_dir(model: str) -> Path:
    return unpacked(model) if is_archive(model) else Path(model)


def load(args: Any) -> tuple[EmbedEngine, Embedder]:
    import torch
    from tokenizers import Tokenizer

    from .encoder import BertEncoder
    from .loader import parse_sha256_args
    from .pooling import PoolingConfig

    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    digests = parse_sha256_args(args.sha256)
    if digests:  # the zip itself, or the directory's files, before anything is read
        verify_digests(Path(args.model).parent if is_archive(args.model) else Path(args.model), digests)
    d = model_dir(args.model)
    encoder = BertEncoder.load(d, args.quantization, args.dtype)
    max_len = args.max_model_len or encoder.cfg.max_seq_length
    if max_len > encoder.cfg.max_position_embeddings:
        raise ValueError(f"--max-model-len {max_len} exceeds the model's {encoder.cfg.max_position_embeddings} positions")
    tok = Tokenizer.from_file(str(d / "tokenizer.json"))
    tok.no_padding()
    tok.no_truncation()  # an input too long is refused by name, never cut silently
    budget = args.max_num_batched_tokens or max(DEFAULT_BATCHED_TOKENS, max_len)
    engine = EmbedEngine(encoder, PoolingConfig.from_dir(d), budget, args.max_queue_len)
    limits = EmbedLimits(max_inputs=args.max_embed_inputs, max_total_tokens=args.max_embed_tokens,
                         max_len=max_len, vocab_size=encoder.cfg.vocab_size)
    engine.embed_now([tok.encode("warm up").ids])  # first forward pays one-off costs
    log.info("embedding model: %d layers, %d dims, pooling %s, max %d tokens per input, %d per step",
             encoder.cfg.layers, encoder.cfg.hidden_size, engine.pooling, max_len, budget)
    return engine, Embedder(tok, limits)


def record(metrics: Any):
    """EmbedStats -> vLLM's metric names (no KV cache: its usage stays 0)."""
    def on_step(s: EmbedStats) -> None:
        metrics.running.set(s.running)
        metrics.waiting.set(s.waiting)
        if s.prompt_tokens:
            metrics.prompt_tokens.inc(s.prompt_tokens)
        for v in s.e2e:
            metrics.e2e.observe(v)
            metrics.record_finish("stop")
    return on_step


def serve(state: Any, http: threading.Thread, started: float) -> int:
    """Load, wait for the socket, turn ready, run the loop until the HTTP server has exited."""
    t0 = time.monotonic()
    try:
        engine, emb = load(state.args)
    except Exception as e:  # a bad model or digest: say why and exit non-zero
        log.error("loading the model failed: %s", e)
        state.load_error = str(e)
        return 1
    log.info("model loaded in %.1f s", time.monotonic() - t0)
    if state.stopping:
        return 0
    from .server import http_listening  # server.py imports this module lazily: no cycle

    if not http_listening(state, http):
        return 1
    engine.on_step = record(state.metrics)
    engine.attach(state.loop)
    state.engine, state.embed = engine, emb
    state.max_model_len = emb.limits.max_len
    gc.collect()
    gc.freeze()  # as server.py: long-lived objects out of the GC's full passes
    state.ready = True
    endpoint = f"http://{state.args.host}:{state.args.port}"
    sys.stderr.write(ready.screen(list(state.names), endpoint, os.environ, started) + "\n")
    sys.stderr.flush()
    threading.Thread(target=lambda: (http.join(), engine.stop()), name="http-watch", daemon=True).start()
    engine.run()
    return 0
