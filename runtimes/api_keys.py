"""API keys, one rule for both engines (the fallback server's gate and the vLLM middleware).

Keys come as vLLM and NIM take them: ``--api-key`` (repeatable: old and new while clients
move over) or the environment (``PACKAGER_API_KEY``, ``VLLM_API_KEY``). With a key set,
every path needs ``Authorization: Bearer KEY`` except the probes (``/v1/health/live``,
``/v1/health/ready``, ``/health``, ``/ping``) and ``/metrics``, so kubelet and Prometheus need
no secret; methods and unknown paths are no exception. Keys never reach a log line.

Standard library only: the launcher copies this file beside ``vllm_health.py`` onto vLLM's
import path, where nothing of ours but those two files exists.
"""

from __future__ import annotations

import hmac
import json
import os
from typing import Any, Iterable, Mapping

ENV_VARS = ("PACKAGER_API_KEY", "VLLM_API_KEY")
OPEN_PATHS = frozenset({"/v1/health/live", "/v1/health/ready", "/health", "/ping", "/metrics"})
MESSAGE = "Incorrect API key provided: send Authorization: Bearer KEY."


def resolve_keys(flags: Iterable[str] | None, env: Mapping[str, str] = os.environ) -> tuple[bytes, ...]:
    """Keys from the flags, else from the environment; empty means open."""
    keys = [k for k in (flags or ()) if k]
    if not keys:
        keys = [env[v] for v in ENV_VARS if env.get(v)]
    return tuple(k.strip().encode() for k in keys if k.strip())


def needs_key(path: str) -> bool:
    return path not in OPEN_PATHS


def authorized(header: bytes | None, keys: tuple[bytes, ...]) -> bool:
    """Constant-time: every key is compared, whatever matched before."""
    if not keys:
        return True
    scheme, _, token = (header or b"").partition(b" ")
    if scheme.lower() != b"bearer":
        token = b""
    ok = False
    for k in keys:
        ok |= hmac.compare_digest(token.strip(), k)
    return ok


def allowed(scope: dict, path: str, keys: tuple[bytes, ...]) -> bool:
    """May this ASGI request reach ``path`` (the route path, without any root path)?"""
    if not keys or not needs_key(path):
        return True
    header = dict(scope.get("headers") or ()).get(b"authorization")  # last value wins; names are lower-case
    return authorized(header, keys)


async def refuse(scope: dict, send: Any) -> None:
    """A 401 with OpenAI's error body (a WebSocket handshake is denied the same way where the
    server can send a denial response, else closed with 1008, policy violation)."""
    body = json.dumps({"error": {"message": MESSAGE, "type": "AuthenticationError", "param": None,
                                 "code": "invalid_api_key"}}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               (b"www-authenticate", b"Bearer")]
    prefix = ""
    if scope["type"] == "websocket":
        if "websocket.http.response" not in (scope.get("extensions") or {}):
            return await send({"type": "websocket.close", "code": 1008})
        prefix = "websocket."
    await send({"type": prefix + "http.response.start", "status": 401, "headers": headers})
    await send({"type": prefix + "http.response.body", "body": body})
