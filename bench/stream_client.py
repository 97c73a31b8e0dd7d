"""One streaming OpenAI client for every server the throughput bench compares.

Each request streams (``stream_options.include_usage`` gives the token count);
the client notes when each chunk with text arrives. Time to first token is
request start to the first such chunk; inter-token latency is the gap between
consecutive such chunks (what vLLM's serving benchmark calls ITL). Both
servers send one token a chunk here, so a gap is one token's time.
"""

from __future__ import annotations

import json
import math
import time
from concurrent.futures import ThreadPoolExecutor

import httpx


def _pct(xs: list[float], q: float) -> float:
    """Nearest-rank percentile (no interpolation: a reported p99 is a gap that happened)."""
    s = sorted(xs)
    return s[max(0, math.ceil(q / 100 * len(s)) - 1)]


def one_stream(base: str, body: dict) -> tuple[int, float, list[float]]:
    """(completion tokens, seconds to first token, inter-token gaps) of one streamed chat request."""
    t0 = time.perf_counter()
    stamps, tokens = [], None
    with httpx.stream("POST", base + "/v1/chat/completions", timeout=600,
                      json={**body, "stream": True, "stream_options": {"include_usage": True}}) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                break
            chunk = json.loads(data)
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
            if any((c.get("delta") or {}).get("content") for c in chunk.get("choices") or []):
                stamps.append(time.perf_counter())
    if tokens is None or not stamps:
        raise RuntimeError(f"{base}: a stream ended without usage or text")
    return tokens, stamps[0] - t0, [b - a for a, b in zip(stamps, stamps[1:])]


def measure(base: str, concurrency: int, bodies: list[dict], new_tokens: int) -> dict:
    """Throughput and latency of ``bodies`` sent ``concurrency`` at a time (after one warm request)."""
    one_stream(base, bodies[0])
    t = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(lambda b: one_stream(base, b), bodies))
    dt = time.perf_counter() - t
    counts = [r[0] for r in results]
    if any(c != new_tokens for c in counts):
        raise RuntimeError(f"{base}: expected {new_tokens} tokens a request, got {counts}")
    ttft = [r[1] for r in results]
    itl = [g for r in results for g in r[2]]
    return {"tokens_per_s": round(sum(counts) / dt, 2),
            "ttft_ms": {"p50": round(_pct(ttft, 50) * 1000, 1), "p99": round(_pct(ttft, 99) * 1000, 1)},
            "itl_ms": {"p50": round(_pct(itl, 50) * 1000, 2), "p99": round(_pct(itl, 99) * 1000, 2)}}
