"""Runs lora_triton_cases.py under the Triton CPU interpreter in a fresh process (TRITON_INTERPRET
must be set before triton is first imported; see test_kernels_triton.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import triton  # noqa: F401  (a test dependency: missing triton fails, never skips)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def test_lora_kernels_match_the_torch_path_in_interpreter():
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rf",
                        str(HERE / "lora_triton_cases.py")], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=600)
    out = r.stdout[-6000:] + r.stderr[-2000:]
    assert r.returncode == 0, out
    assert " passed" in r.stdout and "skipped" not in r.stdout.splitlines()[-1], out
