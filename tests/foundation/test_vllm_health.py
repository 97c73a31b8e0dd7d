"""The vLLM middleware maps NIM's health paths onto vLLM's /health (a real Starlette app, as vLLM's server is)."""
from fastapi import FastAPI
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.testclient import TestClient

from runtimes.vllm_health import nim_health_paths


def make_app(healthy: bool):
    async def health():
        return PlainTextResponse("", status_code=200 if healthy else 503)

    async def models():
        return JSONResponse({"data": []})

    app = FastAPI()  # vLLM's OpenAI server is a FastAPI app
    app.add_api_route("/health", health)
    app.add_api_route("/v1/models", models)
    app.middleware("http")(nim_health_paths)  # how vLLM installs a coroutine middleware
    return app


def test_live_ready_and_passthrough():
    client = TestClient(make_app(healthy=True))
    assert client.get("/v1/health/live").status_code == 200
    assert client.get("/v1/health/ready").status_code == 200
    assert client.get("/v1/models").json() == {"data": []}


def test_ready_follows_vllm_health():
    client = TestClient(make_app(healthy=False))
    assert client.get("/v1/health/live").status_code == 200
    assert client.get("/v1/health/ready").status_code == 503
