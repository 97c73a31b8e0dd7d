"""The README's measured numbers are the result files' numbers (`python bench/readme_table.py`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_readme_table_is_generated_from_the_result_files():
    r = subprocess.run([sys.executable, "bench/readme_table.py", "--check"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_a_stale_table_is_caught(tmp_path):
    readme = tmp_path / "README.md"
    text = (ROOT / "README.md").read_text()
    tp = json.loads((ROOT / "bench/results/runtime_throughput.json").read_text())
    one = next(r for r in tp["runs"] if r["concurrency"] == 1)
    typed = f"{one['tokens_per_s']:.0f} tok/s"
    assert typed in text
    readme.write_text(text.replace(typed, f"{one['tokens_per_s'] * 2:.0f} tok/s"))
    r = subprocess.run([sys.executable, "bench/readme_table.py", "--check", "--readme", str(readme)],
                       cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 1 and "stale" in r.stderr


def test_every_result_records_the_commit_and_the_cpu():
    for name in ("runtime_throughput", "prefix_cache", "quantization_quality"):
        d = json.loads((ROOT / "bench/results" / f"{name}.json").read_text())
        assert d["commit"] and d["cpu_model"] and "load_average_before" in d, name
    tp = json.loads((ROOT / "bench/results/runtime_throughput.json").read_text())
    # The peer is llama.cpp's own server, one instance per level (--parallel 1, --parallel 16 --cont-batching).
    assert set(tp["llama_server_tokens_per_s"]) == {"1", "16"} == set(tp["llama_server_args"])
    for c, argv in tp["llama_server_args"].items():
        assert argv[argv.index("--parallel") + 1] == c and argv[argv.index("--host") + 1] == "127.0.0.1"
    assert "--cont-batching" in tp["llama_server_args"]["16"]
    assert len(tp["llama_server_build"]["llama_cpp_commit"]) == 40 and "-DGGML_NATIVE=OFF" in tp["llama_server_build"]["cmake"]
    assert all("ratio_to_llama_server" in r for r in tp["runs"] if str(r["concurrency"]) in tp["llama_server_tokens_per_s"])
    # Latency for both servers at 1 and 16, from the same streaming client; p99 never below p50.
    lat = [r for r in tp["runs"] if r["concurrency"] in (1, 16)] + [tp["llama_server_latency"][c] for c in ("1", "16")]
    assert len(lat) == 4
    for m in lat:
        for k in ("ttft_ms", "itl_ms"):
            assert 0 < m[k]["p50"] <= m[k]["p99"], (k, m)
    assert set(tp["planner_estimate"]) >= {"1", "16"}
    pc = json.loads((ROOT / "bench/results/prefix_cache.json").read_text())
    assert {"ttft_without_cache_s", "ttft_with_cache_s", "ratio", "commit"} <= set(pc)


def test_a_stale_latency_is_caught(tmp_path):
    readme = tmp_path / "README.md"
    text = (ROOT / "README.md").read_text()
    tp = json.loads((ROOT / "bench/results/runtime_throughput.json").read_text())
    itl = tp["llama_server_latency"]["16"]["itl_ms"]
    typed = f"ITL {itl['p50']:.1f}/{itl['p99']:.1f} ms"
    assert typed in text
    readme.write_text(text.replace(typed, f"ITL {itl['p50'] + 1:.1f}/{itl['p99']:.1f} ms"))
    r = subprocess.run([sys.executable, "bench/readme_table.py", "--check", "--readme", str(readme)],
                       cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 1 and "stale" in r.stderr
