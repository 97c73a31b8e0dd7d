"""Request bodies of the embedding routes, checked by hand into small frozen objects, and their
responses: OpenAI's `/v1/embeddings`, vLLM's `/score` and `/rerank` (Jina/Cohere shapes).

Every refusal is a 400 whose `param` names the field. Unknown fields are ignored (clients send
many); JSON null means the default, as in the generate routes.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

import torch

from .protocol import APIError

ENCODINGS = ("float", "base64")


@dataclass(frozen=True)
class EmbedLimits:
    """Hostile-input limits (args: --max-embed-inputs, --max-embed-tokens; per input: the model's)."""

    max_inputs: int
    max_total_tokens: int
    max_len: int
    vocab_size: int


@dataclass(frozen=True)
class Inputs:
    """Texts to tokenize, or token ids as given (then `texts` is None)."""

    texts: list[str] | None
    ids: list[list[int]] | None


@dataclass(frozen=True)
class EmbeddingRequest:
    model: str | None
    inputs: Inputs
    encoding_format: str


@dataclass(frozen=True)
class ScoreRequest:
    model: str | None
    left: list[str]
    right: list[str]


@dataclass(frozen=True)
class RerankRequest:
    model: str | None
    query: str
    documents: list[str]
    top_n: int


def load_body(body: bytes) -> dict:
    try:
        data = json.loads(body)
    except ValueError as e:
        raise APIError(400, f"request body is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise APIError(400, "request body must be a JSON object")
    return data


def _model(d: dict) -> str | None:
    m = d.get("model")
    if m is not None and not isinstance(m, str):
        raise APIError(400, "`model` must be a string", "model")
    return m


def _is_ids(x: Any) -> bool:
    return isinstance(x, list) and all(isinstance(t, int) and not isinstance(t, bool) for t in x)


def _texts(x: Any, param: str, limits: EmbedLimits, single_ok: bool = True) -> list[str]:
    items = [x] if isinstance(x, str) and single_ok else x
    if not isinstance(items, list) or not all(isinstance(t, str) for t in items):
        raise APIError(400, f"`{param}` must be a string or a list of strings", param)
    if not items:
        raise APIError(400, f"`{param}` must not be empty", param)
    if any(not t for t in items):
        raise APIError(400, f"`{param}` must not contain empty strings", param)
    if len(items) > limits.max_inputs:
        raise APIError(400, f"`{param}` has {len(items)} items; at most {limits.max_inputs} per request "
                            "(--max-embed-inputs)", param)
    return items


def parse_embedding(d: dict, limits: EmbedLimits, dim: int) -> EmbeddingRequest:
    x = d.get("input")
    if x is None:
        raise APIError(400, "`input` is required", "input")
    if _is_ids(x) and x:
        inputs = Inputs(None, [x])
    elif isinstance(x, list) and x and all(_is_ids(s) for s in x):
        if len(x) > limits.max_inputs:
            raise APIError(400, f"`input` has {len(x)} items; at most {limits.max_inputs} per request "
                                "(--max-embed-inputs)", "input")
        if any(not s for s in x):
            raise APIError(400, "`input` must not contain empty token lists", "input")
        inputs = Inputs(None, x)
    else:
        inputs = Inputs(_texts(x, "input", limits), None)
    if inputs.ids is not None:
        bad = [t for s in inputs.ids for t in s if not 0 <= t < limits.vocab_size]
        if bad:
            raise APIError(400, f"token id {bad[0]} is outside the vocabulary (0..{limits.vocab_size - 1})", "input")
    fmt = d.get("encoding_format") or "float"
    if fmt not in ENCODINGS:
        raise APIError(400, f"`encoding_format` must be one of {', '.join(ENCODINGS)}, not {fmt!r}", "encoding_format")
    dims = d.get("dimensions")
    # The model has one output size (no Matryoshka training): asking for it is a no-op, any other a 400.
    if dims is not None and dims != dim:
        raise APIError(400, f"this model does not support `dimensions` other than its own {dim}", "dimensions")
    return EmbeddingRequest(_model(d), inputs, fmt)


# vLLM's score bodies, newest names first: the pair of fields a request uses.
_SCORE_PAIRS = (("queries", "documents"), ("queries", "items"), ("data_1", "data_2"), ("text_1", "text_2"))


def parse_score(d: dict, limits: EmbedLimits) -> ScoreRequest:
    for a, b in _SCORE_PAIRS:
        if a in d and b in d:
            left, right = _texts(d[a], a, limits), _texts(d[b], b, limits)
            if len(left) != 1 and len(left) != len(right):
                raise APIError(400, "Input lengths must be either 1:1, 1:N or N:N", b)
            return ScoreRequest(_model(d), left, right)
    raise APIError(400, "give `queries` and `documents` (or vLLM's `text_1`/`text_2`, `data_1`/`data_2`)", "queries")


def parse_rerank(d: dict, limits: EmbedLimits) -> RerankRequest:
    q = d.get("query")
    if not isinstance(q, str) or not q:
        raise APIError(400, "`query` must be a non-empty string", "query")
    docs = _texts(d.get("documents"), "documents", limits)
    top_n = d.get("top_n") or 0
    if not isinstance(top_n, int) or isinstance(top_n, bool) or top_n < 0:
        raise APIError(400, "`top_n` must be a non-negative integer (0: all)", "top_n")
    return RerankRequest(_model(d), q, docs, top_n)


def check_lengths(seqs: list[list[int]], limits: EmbedLimits, param: str) -> int:
    """Total tokens, after refusing an input longer than the model takes or too many in all."""
    for i, s in enumerate(seqs):
        if len(s) > limits.max_len:
            raise APIError(400, f"This model's maximum context length is {limits.max_len} tokens. However, "
                                f"input {i} has {len(s)} tokens.", param, code="context_length_exceeded")
    total = sum(len(s) for s in seqs)
    if total > limits.max_total_tokens:
        raise APIError(400, f"the request has {total} tokens; at most {limits.max_total_tokens} per request "
                            "(--max-embed-tokens)", param)
    return total


def _usage(tokens: int) -> dict:
    return {"prompt_tokens": tokens, "total_tokens": tokens, "completion_tokens": 0}


def _encode(v: torch.Tensor, fmt: str) -> list[float] | str:
    if fmt == "base64":  # OpenAI's: little-endian float32 bytes
        return base64.b64encode(v.to(torch.float32).numpy().astype("<f4").tobytes()).decode()
    return v.tolist()


def embedding_response(model: str, vectors: torch.Tensor, fmt: str, tokens: int) -> dict:
    data = [{"index": i, "object": "embedding", "embedding": _encode(v, fmt)} for i, v in enumerate(vectors)]
    return {"id": f"embd-{uuid.uuid4().hex}", "object": "list", "created": int(time.time()), "model": model,
            "data": data, "usage": _usage(tokens)}


def score_response(model: str, scores: list[float], tokens: int) -> dict:
    return {"id": f"score-{uuid.uuid4().hex}", "object": "list", "created": int(time.time()), "model": model,
            "data": [{"index": i, "object": "score", "score": s} for i, s in enumerate(scores)], "usage": _usage(tokens)}


def rerank_response(model: str, req: RerankRequest, scores: list[float], tokens: int) -> dict:
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    if req.top_n:
        order = order[:req.top_n]
    results = [{"index": i, "document": {"text": req.documents[i]}, "relevance_score": scores[i]} for i in order]
    return {"id": f"rerank-{uuid.uuid4().hex}", "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}, "results": results}
