"""API keys, as vLLM and NIM take them: ``--api-key`` (repeatable) or the
environment (``PACKAGER_API_KEY``, ``VLLM_API_KEY``). With a key set, every
``/v1/*`` route needs ``Authorization: Bearer KEY``; the probes
(``/v1/health/*``, ``/health``) and ``/metrics`` stay open so kubelet and
Prometheus need no secret. Keys never reach a log line."""

from __future__ import annotations

import hmac
import os
from typing import Iterable, Mapping

ENV_VARS = ("PACKAGER_API_KEY", "VLLM_API_KEY")
OPEN_PREFIXES = ("/v1/health/",)
OPEN_PATHS = frozenset({"/health", "/metrics"})


def resolve_keys(flags: Iterable[str] | None, env: Mapping[str, str] = os.environ) -> tuple[bytes, ...]:
    """Keys from the flags, else from the environment; empty means open."""
    keys = [k for k in (flags or ()) if k]
    if not keys:
        keys = [env[v] for v in ENV_VARS if env.get(v)]
    return tuple(k.strip().encode() for k in keys if k.strip())


def needs_key(path: str) -> bool:
    return path.startswith("/v1/") and not path.startswith(OPEN_PREFIXES) and path not in OPEN_PATHS


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
