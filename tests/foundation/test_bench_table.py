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
    assert set(tp["llamacpp_tokens_per_s"]) == {"1", "16"}
    assert all("ratio_to_llamacpp" in r for r in tp["runs"] if str(r["concurrency"]) in tp["llamacpp_tokens_per_s"])
    pc = json.loads((ROOT / "bench/results/prefix_cache.json").read_text())
    assert {"ttft_without_cache_s", "ttft_with_cache_s", "ratio", "commit"} <= set(pc)
