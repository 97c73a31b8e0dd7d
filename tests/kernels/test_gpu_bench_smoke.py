"""The GPU check script's logic, run here in its --smoke mode (CPU, Triton
interpreter, tiny shapes), so the script is known to work before it is spent
on a lent GPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import triton  # noqa: F401,E402  (a test dependency: missing triton fails, never skips)

ROOT = Path(__file__).resolve().parents[2]


def test_gpu_bench_smoke(tmp_path):
    out = tmp_path / "res.json"
    env = {k: v for k, v in os.environ.items() if k != "OUT"}
    r = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "gpu" / "kernels_and_decode.py"), "--smoke", "--out", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    res = json.loads(out.read_text())
    assert res["ok"] and not res["errors"]
    assert res["kernel_checks_ok"] and len(res["kernel_checks"]) >= 20
    ops = {c["op"].split("[")[0].split("+")[0] for c in res["kernel_checks"]}
    assert ops == {"rms_norm", "silu_and_mul", "rotary", "decode_attn"}
    assert {(d["batch"], d["ops"]) for d in res["decode"]} == {(1, "torch"), (1, "triton"), (3, "torch"),
                                                              (3, "triton")}
    assert all(c["rel_l2"] < 1e-4 for c in res["decode_consistency"])  # fp32 in the interpreter
    assert res["copy_bandwidth"]["bytes_per_s"] > 0
