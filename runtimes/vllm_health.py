"""NIM-style health paths for vLLM's OpenAI server, loaded with `vllm serve --middleware`.

vLLM serves `/health`; our contract (and NIM's) is `/v1/health/live` and
`/v1/health/ready`. vLLM calls a coroutine-function middleware for every HTTP
request, so this maps the two paths without a proxy process:
- live: 200 whenever the process answers HTTP at all;
- ready: whatever vLLM's own `/health` says (503 once the engine is dead).
vLLM only starts listening after the model is loaded, so before that the
probe's connection is refused, which Kubernetes counts as not ready.
"""
from __future__ import annotations

LIVE = "/v1/health/live"
READY = "/v1/health/ready"
MIDDLEWARE = "runtimes.vllm_health.nim_health_paths"  # the `--middleware` value


async def nim_health_paths(request, call_next):
    path = request.scope.get("path", "")
    if path == LIVE:
        from starlette.responses import JSONResponse  # vLLM's server brings starlette

        return JSONResponse({"status": "live"})
    if path == READY:
        request.scope["path"] = "/health"
        request.scope["raw_path"] = b"/health"
    return await call_next(request)
