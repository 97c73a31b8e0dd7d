"""NIM-style health paths and the API key on every route, for vLLM's OpenAI server, loaded
with `vllm serve --middleware`.

vLLM adds a middleware class outermost (``app.add_middleware``), so this plain ASGI class sees
every request, HTTP and WebSocket, before vLLM's own middleware and routes:
- the key: with one set (``VLLM_API_KEY``, as the launcher hands it on, or
  ``PACKAGER_API_KEY``; ``runtimes/api_keys.py``, the fallback server's rule), every path but
  the probes and ``/metrics`` needs it, whatever vLLM's own prefix list guards (0.33.0 guards
  only ``/v1``, ``/v2``, ``/inference`` and ``/cohere``: ``/invocations``, ``/tokenize``,
  ``/pooling``, ``/score``, ``/rerank``, ``/classify`` answered without it). A refusal is a
  401 with OpenAI's error body. Without a key nothing changes;
- live: 200 whenever the process answers HTTP at all;
- ready: whatever vLLM's own `/health` says (503 once the engine is dead).
vLLM only starts listening after the model is loaded, so before that the
probe's connection is refused, which Kubernetes counts as not ready.
"""
from __future__ import annotations

from runtimes.api_keys import allowed, refuse, resolve_keys

LIVE = "/v1/health/live"
READY = "/v1/health/ready"
MIDDLEWARE = "runtimes.vllm_health.HealthAndKey"  # the `--middleware` value


def route_path(scope: dict) -> str:
    """The path the app routes on: without the root path (as Starlette strips it)."""
    path, root = scope.get("path", ""), scope.get("root_path", "")
    if root and path.startswith(root) and (len(path) == len(root) or path[len(root)] == "/"):
        return path[len(root):]
    return path


class HealthAndKey:
    def __init__(self, app, keys: tuple[bytes, ...] | None = None):
        self.app = app
        self.keys = resolve_keys(None) if keys is None else keys  # read once, when vLLM builds its app

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        path = route_path(scope)
        if not allowed(scope, path, self.keys):
            return await refuse(scope, send)
        if scope["type"] == "http" and path == LIVE:
            body = b'{"status":"live"}'
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]})
            return await send({"type": "http.response.body", "body": body})
        if path == READY:
            full = scope["path"][: len(scope["path"]) - len(path)] + "/health"
            scope = {**scope, "path": full, "raw_path": full.encode()}
        return await self.app(scope, receive, send)
