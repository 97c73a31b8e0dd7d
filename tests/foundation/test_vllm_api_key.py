"""With an API key, every route of vLLM's real app needs it except the probes and /metrics
(issue 20, item 5): vLLM 0.33.0's own AuthenticationMiddleware guards only the /v1, /v2,
/inference and /cohere prefixes, so /invocations, /tokenize, /pooling, /score, /rerank and
/classify answered without a key. Checked in the vLLM venv that .ci/vllm_contract.sh builds:
vLLM's own build_app (every task, every pooling variant, dev mode and fault tolerance on, our
middleware through --middleware, the key from VLLM_API_KEY as the launcher hands it on) lists
the routes; each is then called through that app without the key. vLLM cannot serve here,
but a refusal happens before any handler runs."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from runtimes.api_keys import OPEN_PATHS

ROOT = Path(__file__).resolve().parents[2]
from tests.vllm_real import VENV

SCRIPT = r'''
import json, os, re, sys
from types import SimpleNamespace
from typing import get_args
sys.path.insert(0, sys.argv[1])
from fastapi import FastAPI
from starlette.routing import Mount, WebSocketRoute
from starlette.testclient import TestClient, WebSocketDenialResponse
import vllm.tasks as T
from vllm.entrypoints.common.cli_args import make_arg_parser
from vllm.entrypoints.launchers.app import build_app
from vllm.entrypoints.serve.middleware.register import init_entrypoints_middleware
from vllm.utils.argparse_utils import FlexibleArgumentParser
from runtimes.vllm_health import MIDDLEWARE

args = make_arg_parser(FlexibleArgumentParser()).parse_args(["--middleware", MIDDLEWARE, "--enable-fault-tolerance"])
tasks = tuple(get_args(T.GenerationTask)) + tuple(get_args(T.PoolingTask)) + tuple(get_args(T.FrontendTask))
routes, outermost = {}, set()
for pooling in (None, "embed", "token_embed", "classify", "token_classify", "plugin"):
    # What build_app reads of a pooling model's config: which routers it registers.
    config = None if pooling is None else SimpleNamespace(
        get_pooling_task=lambda supported, p=pooling: p, hf_config=SimpleNamespace(num_labels=1),
        architecture="X", io_processor_plugin=None)
    app = build_app(args, tasks, config)
    outermost.add(app.user_middleware[0].cls.__name__)
    client = TestClient(app, raise_server_exceptions=False)
    for r in app.routes:
        path = re.sub(r"\{[^}]*\}", "x", r.path)
        if isinstance(r, WebSocketRoute):
            try:
                with client.websocket_connect(path):
                    got = "accepted"
            except WebSocketDenialResponse as e:
                got = e.status_code
            routes[path + " WS"] = got
            continue
        methods = sorted(getattr(r, "methods", None) or ["GET", "POST"]) if not isinstance(r, Mount) else ["GET"]
        for m in methods:
            res = client.request(m, path)
            try:
                err = res.json()["error"]
            except (ValueError, KeyError, TypeError):
                err = None
            routes[f"{path} {m}"] = [res.status_code, err.get("code") if isinstance(err, dict) else None]

# The probes through a trivial app with vLLM's middleware registration (its handlers need an engine).
app = FastAPI()
app.get("/health")(lambda: {})
app.get("/v1/models")(lambda: {"data": []})
init_entrypoints_middleware(args, app, ("generate",))
c = TestClient(app)
probes = {p: c.get(p).status_code for p in ("/v1/health/live", "/v1/health/ready", "/metrics", "/v1/models")}
probes["key"] = c.get("/v1/models", headers={"Authorization": "Bearer " + os.environ["VLLM_API_KEY"]}).status_code
print(json.dumps({"routes": routes, "outermost": sorted(outermost), "probes": probes}))
'''


@pytest.fixture(scope="module")
def vllm_app():
    python = VENV / "bin" / "python"
    if not python.exists():
        msg = f"no vLLM venv at {VENV}: run bash .ci/vllm_contract.sh"
        if os.environ.get("CI") and os.environ.get("VLLM_CONTRACT", "real") == "real":
            pytest.fail(msg)
        pytest.skip(msg)
    env = dict(os.environ, VLLM_API_KEY="k-123", VLLM_TARGET_DEVICE="cpu", VLLM_SERVER_DEV_MODE="1")
    r = subprocess.run([str(python), "-c", SCRIPT, str(ROOT)], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_every_vllm_route_but_the_probes_and_metrics_refuses_a_missing_key(vllm_app):
    routes = vllm_app["routes"]
    assert vllm_app["outermost"] == ["HealthAndKey"]  # before vLLM's own auth, CORS and the routes
    # The routes vLLM's prefix list left open are in the table, and so refused by us.
    for path in ("/invocations POST", "/tokenize POST", "/pooling POST", "/score POST", "/rerank POST",
                 "/classify POST", "/v1/chat/completions POST", "/docs GET", "/version GET", "/v1/realtime WS"):
        assert path in routes, sorted(routes)
    refused = {k: v for k, v in routes.items() if k.split()[0] not in OPEN_PATHS}
    assert len(refused) > 60
    # A 401 with OpenAI's error body (a HEAD answer has no body; a WebSocket handshake is denied).
    bad = {k: v for k, v in refused.items()
           if v not in ([401, "invalid_api_key"], 401) and not (k.endswith(" HEAD") and v == [401, None])}
    assert not bad, bad
    # The probes and /metrics reach vLLM's handlers (which fail here without an engine), never a 401.
    opened = {k: v for k, v in routes.items() if k.split()[0] in OPEN_PATHS}
    assert {k.split()[0] for k in opened} == {"/health", "/ping", "/metrics"}
    assert all(v[0] != 401 for v in opened.values()), opened


def test_vllm_with_a_key_keeps_the_probes_open(vllm_app):
    assert vllm_app["probes"] == {"/v1/health/live": 200, "/v1/health/ready": 200, "/metrics": 404,
                                  "/v1/models": 401, "key": 200}
