"""The vLLM middleware maps NIM's health paths onto vLLM's /health and holds the API key on
every other path (a real Starlette app, as vLLM's server is; vLLM's own route table is checked
in test_vllm_api_key.py)."""
import pytest
from fastapi import FastAPI, WebSocket
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.testclient import TestClient, WebSocketDenialResponse

from runtimes.vllm_health import HealthAndKey

KEY = "k-123"
PATHS = ("/v1/models", "/invocations", "/tokenize", "/pooling", "/score", "/rerank", "/classify", "/version")


def make_app(healthy: bool = True, keys: tuple[bytes, ...] = ()):
    async def health():
        return PlainTextResponse("", status_code=200 if healthy else 503)

    async def ok():
        return JSONResponse({"data": []})

    async def talk(ws: WebSocket):
        await ws.accept()
        await ws.send_text("hi")
        await ws.close()

    app = FastAPI()  # vLLM's OpenAI server is a FastAPI app
    app.add_api_route("/health", health)
    for p in PATHS + ("/ping", "/metrics"):
        app.add_api_route(p, ok, methods=["GET", "POST"])
    app.add_api_websocket_route("/v1/realtime", talk)
    app.add_middleware(HealthAndKey, keys=keys)  # how vLLM installs a middleware class (outermost)
    return app


def test_live_ready_and_passthrough():
    client = TestClient(make_app(healthy=True))
    assert client.get("/v1/health/live").json() == {"status": "live"}
    assert client.get("/v1/health/ready").status_code == 200
    assert client.get("/v1/models").json() == {"data": []}


def test_ready_follows_vllm_health():
    client = TestClient(make_app(healthy=False))
    assert client.get("/v1/health/live").status_code == 200
    assert client.get("/v1/health/ready").status_code == 503


def test_without_a_key_nothing_is_guarded():
    client = TestClient(make_app())
    assert all(client.post(p).status_code == 200 for p in PATHS)
    with client.websocket_connect("/v1/realtime") as ws:
        assert ws.receive_text() == "hi"


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY},
                                     {"Authorization": "Basic " + KEY}])
def test_with_a_key_every_path_but_the_probes_needs_it(headers):
    client = TestClient(make_app(keys=(KEY.encode(),)))
    for p in PATHS + ("/nowhere",):
        for method in ("GET", "POST", "OPTIONS"):
            r = client.request(method, p, headers=headers)
            assert r.status_code == 401, (method, p)
            assert r.json()["error"]["code"] == "invalid_api_key" and r.headers["www-authenticate"] == "Bearer"
    with pytest.raises(WebSocketDenialResponse) as denied, client.websocket_connect("/v1/realtime", headers=headers):
        pass
    assert denied.value.status_code == 401
    for p in ("/v1/health/live", "/v1/health/ready", "/health", "/ping", "/metrics"):
        assert client.get(p, headers=headers).status_code == 200, p


def test_with_the_key_everything_passes_and_rotation_takes_either():
    client = TestClient(make_app(keys=(b"old", b"new")))
    for k in ("old", "new"):
        assert all(client.post(p, headers={"Authorization": f"Bearer {k}"}).status_code == 200 for p in PATHS)
        with client.websocket_connect("/v1/realtime", headers={"Authorization": f"Bearer {k}"}) as ws:
            assert ws.receive_text() == "hi"


def test_keys_come_from_the_environment_as_the_launcher_hands_them_on(monkeypatch):
    monkeypatch.delenv("PACKAGER_API_KEY", raising=False)
    monkeypatch.setenv("VLLM_API_KEY", KEY)
    app = FastAPI()
    app.add_api_route("/invocations", lambda: {}, methods=["POST"])
    app.add_middleware(HealthAndKey)  # as vLLM does: no arguments, keys read when the app is built
    client = TestClient(app)
    assert client.post("/invocations").status_code == 401
    assert client.post("/invocations", headers={"Authorization": f"Bearer {KEY}"}).status_code == 200


def test_a_root_path_is_not_a_way_around_the_key():
    client = TestClient(make_app(keys=(KEY.encode(),)), root_path="/llm")  # as `vllm serve --root-path /llm`
    assert client.get("/llm/v1/health/live").status_code == 200
    assert client.get("/llm/v1/health/ready").status_code == 200
    assert client.post("/llm/invocations").status_code == 401
    assert client.post("/llm/invocations", headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
