"""bench/runtime_throughput.py's argument handling and the peer's command line (the full bench is not run here)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
import runtime_throughput as rt  # noqa: E402
from stream_client import _pct  # noqa: E402


def bad(*args: str) -> str:
    r = subprocess.run([sys.executable, "bench/runtime_throughput.py", *args], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    return r.stderr


def test_defaults_measure_1_4_16_of_16_requests():
    a = rt.parse_args([])
    assert a.levels == [1, 4, 16] and a.requests == 16 and a.new_tokens == 128


def test_bad_levels_are_refused_before_anything_is_built():
    assert "--concurrency '1,x'" in bad("--concurrency", "1,x")
    assert "<= --requests" in bad("--concurrency", "1,32")
    assert ">= 1" in bad("--concurrency", "0")


def test_llama_server_serves_the_same_gguf_on_loopback_with_one_slot_per_request():
    argv = rt.llama_server_argv("/bin/llama-server", 19000, 16, 2)
    assert argv[argv.index("-m") + 1] == str(rt.model_dir() / rt.GGUF)
    assert argv[argv.index("--host") + 1] == "127.0.0.1"
    assert argv[argv.index("--parallel") + 1] == "16" and "--cont-batching" in argv
    assert int(argv[argv.index("-c") + 1]) // 16 >= 128 + 64  # each slot holds a prompt plus the new tokens
    assert rt.llama_server_argv("/bin/llama-server", 19000, 1, 2)[argv.index("--parallel") + 1] == "1"


def test_percentiles_are_nearest_rank():
    xs = [float(i) for i in range(1, 101)]
    assert _pct(xs, 50) == 50.0 and _pct(xs, 99) == 99.0 and _pct([3.0], 99) == 3.0
