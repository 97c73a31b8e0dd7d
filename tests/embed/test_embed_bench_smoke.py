"""bench/embeddings.py (the README's command) runs end to end at one round; its numbers come from full runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def test_embeddings_bench_runs(tmp_path):
    out = tmp_path / "embeddings.json"
    r = subprocess.run([sys.executable, "bench/embeddings.py", "--rounds", "1", "--port", "18970", "--out", str(out)],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    d = json.loads(out.read_text())
    assert set(d["embeddings_per_s"]) == {"sentence_transformers", "float32", "bfloat16"}
    assert all(v > 0 for v in d["embeddings_per_s"].values()) and d["commit"] and d["cpu_model"]
    # the vectors agree with sentence-transformers' own (a property, not a speed)
    assert min(d["min_cosine_to_sentence_transformers"].values()) >= 0.999
