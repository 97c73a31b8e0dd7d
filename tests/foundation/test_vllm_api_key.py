"""With an API key, vLLM's own AuthenticationMiddleware guards /v1/*; our
health middleware (loaded with --middleware) must keep /v1/health/* open for
the kubelet. Checked with vLLM 0.33.0's real middleware registration, in the
vLLM venv that .ci/vllm_contract.sh builds (issue 9, item 1)."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from packager.cachedir import cache_dir

ROOT = Path(__file__).resolve().parents[2]
VENV = Path(os.environ.get("VLLM_VENV") or cache_dir("venv-vllm"))  # .ci/vllm_contract.sh makes it

SCRIPT = r'''
import json, os, sys
sys.path.insert(0, sys.argv[1])
from fastapi import FastAPI
from fastapi.testclient import TestClient
from vllm.entrypoints.common.cli_args import make_arg_parser
from vllm.entrypoints.serve.middleware.register import init_entrypoints_middleware
from vllm.utils.argparse_utils import FlexibleArgumentParser
from runtimes.vllm_health import MIDDLEWARE
args = make_arg_parser(FlexibleArgumentParser()).parse_args(["--middleware", MIDDLEWARE])
app = FastAPI()
app.get("/health")(lambda: {})
app.get("/v1/models")(lambda: {"data": []})
init_entrypoints_middleware(args, app, ("generate",))  # key from VLLM_API_KEY, as the launcher hands it on
c = TestClient(app)
out = {p: c.get(p).status_code for p in ("/v1/health/live", "/v1/health/ready", "/metrics", "/v1/models")}
out["key"] = c.get("/v1/models", headers={"Authorization": "Bearer " + os.environ["VLLM_API_KEY"]}).status_code
print(json.dumps(out))
'''


def test_vllm_with_a_key_keeps_the_probes_open():
    python = VENV / "bin" / "python"
    if not python.exists():
        msg = f"no vLLM venv at {VENV}: run bash .ci/vllm_contract.sh"
        if os.environ.get("CI") and os.environ.get("VLLM_CONTRACT", "real") == "real":
            pytest.fail(msg)
        pytest.skip(msg)
    env = dict(os.environ, VLLM_API_KEY="k-123", VLLM_TARGET_DEVICE="cpu")
    r = subprocess.run([str(python), "-c", SCRIPT, str(ROOT)], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got == {"/v1/health/live": 200, "/v1/health/ready": 200, "/metrics": 404, "/v1/models": 401, "key": 200}
