"""The README's runtime benchmarks run end to end (tiny sizes; the numbers
themselves come from full runs on a quiet machine, in bench/results)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


ROOT = Path(__file__).resolve().parents[2]


def run(args, timeout=600):
    r = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    return r


def test_prefix_cache_bench(tmp_path):
    out = tmp_path / "prefix.json"
    run(["bench/prefix_cache.py", "--requests", "3", "--system-tokens", "80", "--port", "18990", "--out", str(out)])
    d = json.loads(out.read_text())
    assert d["prefix_cache"]["vllm:prefix_cache_hits_total"] >= 2 * 64, "the 2nd and 3rd request hit the system prompt"
    assert d["ttft_with_cache_s"] > 0 and d["ttft_without_cache_s"] > 0 and d["commit"]


def test_quantization_quality_bench(tmp_path):
    out = tmp_path / "q.json"
    run(["bench/quantization_quality.py", "--schemes", "auto", "--new-tokens", "8", "--out", str(out)])
    d = json.loads(out.read_text())
    assert d["auto"]["engine_decode_tokens_per_s"] > 0 and len(d["auto"]["prompts"]) == 8
    # The bench's own prompts are not facts on every CPU (tests/answers.py): it reports agreement, the test
    # checks that it did.
    assert all(p["answer"] for p in d["auto"]["prompts"]) and 0 <= d["auto"]["facts_kept"] <= d["facts_total"]


def test_lora_throughput_bench(tmp_path):
    out = tmp_path / "lora.json"
    run(["bench/lora_throughput.py", "--requests", "4", "--tokens", "4", "--rounds", "1", "--rank", "8",
         "--port", "18991", "--out", str(out)])
    d = json.loads(out.read_text())
    assert d["base_tokens_per_s"][0] > 0 and d["adapter_tokens_per_s"][0] > 0 and d["commit"]
    assert d["ratio_adapters_over_base"] > 0


def test_decode_profile_bench(tmp_path):
    out = tmp_path / "profile.json"
    run(["bench/decode_profile.py", "--steps", "2", "--out", str(out)])
    d = json.loads(out.read_text())
    assert [r["sequences"] for r in d["runs"]] == [1, 16] and d["commit"]
    one, sixteen = d["runs"]
    def bucket(run, start):
        return sum(v for k, v in run["by_bucket_ms"].items() if k.startswith(start))

    assert one["step_wall_ms"] > 0 and bucket(one, "int4 matmuls") > 0
    assert bucket(sixteen, "oneDNN matmuls") > 0 and bucket(sixteen, "int4 matmuls") == 0  # batched rows: a copy
