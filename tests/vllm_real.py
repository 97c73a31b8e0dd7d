"""vLLM's real parser for the tests: `python -m packager.vllm.contract --real` inside the pinned vLLM
venv (.ci/vllm_contract.sh makes it; VLLM_VENV points elsewhere). Missing venv: the test fails."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from packager.cachedir import cache_dir

ROOT = Path(__file__).resolve().parents[1]
VENV = Path(os.environ.get("VLLM_VENV") or cache_dir("venv-vllm"))


def vllm_python() -> Path:
    python = VENV / "bin" / "python"
    assert python.exists(), f"no vLLM venv at {VENV}: run bash .ci/vllm_contract.sh"
    return python


def real_check(cases: list[dict], tmp_path: Path) -> subprocess.CompletedProcess:
    """Each case ({"name", "argv", "expect_valid"...}: packager.vllm.contract.read_cases) through the
    snapshot and vLLM's own parser; rc 0 when every case came out as expected."""
    f = tmp_path / "vllm-cases.json"
    f.write_text(json.dumps({"cases": cases}))
    return subprocess.run([str(vllm_python()), "-m", "packager.vllm.contract", "--real", str(f)], cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "VLLM_TARGET_DEVICE": "cpu"},
                          capture_output=True, text=True, timeout=600)
