"""schemathesis (PyPI) over the real server's OpenAPI document: bodies
generated from the published request schemas for /v1/chat/completions and
/v1/completions, bounded examples, a short context so every answer is small.
Every response must be below 500, every 4xx must carry OpenAI's error body
(``error.code`` a string or null), and the server must answer a normal
request afterwards."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import httpx
import pytest

from .conftest import MODEL_NAME
from packager.cachedir import cache_dir

pytestmark = pytest.mark.slow

KEY = "sk-fuzz-key"


def tool(name: str) -> str:
    """A tool from .ci/security_tools.sh; a CI run without it fails, never skips."""
    path = Path(os.environ.get("PACKAGER_TOOLS") or cache_dir("tools")) / name / "bin" / name
    found = str(path) if path.exists() else shutil.which(name)
    if found is None:
        msg = f"{name} is not installed: run bash .ci/security_tools.sh"
        pytest.fail(msg) if os.environ.get("CI") else pytest.skip(msg)
    return found


@pytest.fixture(scope="module")
def server(server_factory):
    s = server_factory("--max-model-len", "96", "--max-num-seqs", "8", "--enable-docs", "--api-key", KEY)
    s.wait_ready()
    return s


def test_openapi_publishes_the_real_request_schemas(server):
    # The document is behind the key like every path but the probes and /metrics (runtimes/api_keys.py).
    assert httpx.get(server.base + "/openapi.json").status_code == 401
    doc = httpx.get(server.base + "/openapi.json", headers={"Authorization": f"Bearer {KEY}"}).json()
    for path, required in (("/v1/chat/completions", "messages"), ("/v1/completions", "prompt")):
        schema = doc["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
        assert required in schema["required"] and "temperature" in schema["properties"]
    assert "ChatMessage" in doc["components"]["schemas"]


def test_schemathesis_finds_no_5xx_and_only_openai_errors(server, tmp_path):
    st = tool("schemathesis")
    argv = [st, "run", server.base + "/openapi.json", "-H", f"Authorization: Bearer {KEY}",
            "--checks", "not_a_server_error", "--include-path-regex", r"^/v1/(chat/)?completions$",
            "-n", "15", "--seed", "9", "--no-color", "--generation-database", "none", "--request-timeout", "60",
            "--report", "har", "--report-dir", str(tmp_path)]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    (har,) = tmp_path.glob("har-*.json")
    statuses: Counter = Counter()
    for entry in json.loads(har.read_text())["log"]["entries"]:
        status = entry["response"]["status"]
        statuses[status] += 1
        assert status < 500, entry
        if status >= 400:
            err = json.loads(entry["response"]["content"]["text"])["error"]
            assert set(err) == {"message", "type", "param", "code"}, err
            assert err["code"] is None or isinstance(err["code"], str), err
    assert statuses[200] > 0 and sum(v for k, v in statuses.items() if 400 <= k < 500) > 0, statuses
    r = httpx.post(server.base + "/v1/completions", headers={"Authorization": f"Bearer {KEY}"},
                   json={"model": MODEL_NAME, "prompt": "Paris is the capital of", "max_tokens": 3}, timeout=60)
    assert r.status_code == 200 and r.json()["choices"][0]["text"]
