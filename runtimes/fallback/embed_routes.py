"""The pooling routes: OpenAI's `/v1/embeddings`, vLLM's `/score` and `/rerank` (cosine of the
pooled vectors, as vLLM scores with an embedding model). Registered on every server; on a
generate model they answer 404 (task.py)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request

from .embed_engine import QueueFull
from .embed_protocol import (EmbedLimits, check_lengths, embedding_response, load_body, parse_embedding,
                             parse_rerank, parse_score, rerank_response, score_response)
from .protocol import APIError
from .respond import check
from .task import EMBED, refuse_other_task


@dataclass(frozen=True)
class Embedder:
    """What the routes need once the model is loaded."""

    tokenizer: Any  # tokenizers.Tokenizer: no padding, no truncation (lengths are checked, not cut)
    limits: EmbedLimits


def add_routes(app: FastAPI, state: Any) -> None:
    @app.post("/v1/embeddings")
    async def embeddings(request: Request):
        emb = await _ready(state)
        req = parse_embedding(load_body(await request.body()), emb.limits, state.engine.dim)
        check(state, req.model)
        seqs = req.inputs.ids or await _tokenize(emb, req.inputs.texts)
        tokens = check_lengths(seqs, emb.limits, "input")
        vectors = await _run(state, seqs)
        return embedding_response(req.model or state.names[0], vectors, req.encoding_format, tokens)

    async def score(request: Request):
        emb = await _ready(state)
        req = parse_score(load_body(await request.body()), emb.limits)
        check(state, req.model)
        seqs = await _tokenize(emb, req.left + req.right)
        tokens = check_lengths(seqs, emb.limits, "queries")
        v = await _run(state, seqs)
        left, right = v[:len(req.left)], v[len(req.left):]
        left = left.expand(len(req.right), -1) if len(req.left) == 1 else left
        return score_response(req.model or state.names[0], _cosine(left, right), tokens)

    async def rerank(request: Request):
        emb = await _ready(state)
        req = parse_rerank(load_body(await request.body()), emb.limits)
        check(state, req.model)
        seqs = await _tokenize(emb, [req.query, *req.documents])
        tokens = check_lengths(seqs, emb.limits, "documents")
        v = await _run(state, seqs)
        scores = _cosine(v[:1].expand(len(req.documents), -1), v[1:])
        return rerank_response(req.model or state.names[0], req, scores, tokens)

    for path in ("/score", "/v1/score"):
        app.add_api_route(path, score, methods=["POST"])
    for path in ("/rerank", "/v1/rerank", "/v2/rerank"):
        app.add_api_route(path, rerank, methods=["POST"])


async def _ready(state: Any) -> Embedder:
    refuse_other_task(state, EMBED, "Embeddings API")
    check(state, None)  # loading or draining: say so before any work
    return state.embed


async def _tokenize(emb: Embedder, texts: list[str]) -> list[list[int]]:
    # The Rust tokenizer releases the GIL: off the event loop, the probes keep answering.
    encs = await asyncio.get_running_loop().run_in_executor(None, emb.tokenizer.encode_batch, texts)
    return [e.ids for e in encs]


async def _run(state: Any, seqs: list[list[int]]):
    try:
        return await state.engine.embed(seqs)
    except QueueFull:
        raise APIError(429, "too many requests waiting; retry later", headers={"Retry-After": "1"}) from None
    except RuntimeError as e:
        if str(e) == "aborted":
            raise APIError(503, "server is shutting down", headers={"Retry-After": "5"}) from None
        raise


def _cosine(a, b) -> list[float]:
    import torch.nn.functional as F

    return F.cosine_similarity(a, b, dim=-1).tolist()
