"""Throughput with LoRA adapters against the base model, in one run (issue 22, item 6).

    python bench/lora_throughput.py [--requests 16] [--tokens 32] [--rounds 2]

One server on the shipped SmolLM2 GGUF with 4 adapters (seeded random PEFT tensors of rank 16
on every decoder linear, made here: tests/lora_adapters.py) and ``--max-loras 4``. Each round
sends 16 concurrent completions to the base model, then 16 spread over the 4 adapters (4
each), every one generating exactly ``--tokens`` tokens (ignore_eos). Rounds alternate so
drifting load hits both sides. Prints generated tokens/s of each and the ratio
adapters / base (goal >= 0.7), and writes bench/results/lora_throughput.json.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "bench"), str(ROOT)]
from benchinfo import load_record, machine_record  # noqa: E402
from runtime_throughput import GGUF, NAME, TOPICS, model_dir, wait_ready  # noqa: E402
from tests.lora_adapters import SMOL, write_adapter  # noqa: E402

ADAPTERS = ("ad1", "ad2", "ad3", "ad4")


def burst(base: str, models: list[str], tokens: int) -> float:
    """Generated tokens per second of one burst of concurrent requests."""
    def one(i: int) -> int:
        body = {"model": models[i], "prompt": f"Write a short note about {TOPICS[i % len(TOPICS)]}.",
                "max_tokens": tokens, "temperature": 0, "ignore_eos": True}
        r = httpx.post(base + "/v1/completions", json=body, timeout=600)
        r.raise_for_status()
        return r.json()["usage"]["completion_tokens"]

    t0 = time.perf_counter()
    with cf.ThreadPoolExecutor(len(models)) as pool:
        done = sum(pool.map(one, range(len(models))))
    return done / (time.perf_counter() - t0)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=16)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--port", type=int, default=8791)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "lora_throughput.json"))
    a = ap.parse_args()
    record = machine_record()
    tmp = Path(tempfile.mkdtemp(prefix="lora-bench-"))
    modules = [f"{n}={write_adapter(tmp / n, SMOL, i + 1, rank=a.rank, alpha=2 * a.rank)}" for i, n in enumerate(ADAPTERS)]
    argv = [sys.executable, "-m", "runtimes.fallback", "--model", str(model_dir() / GGUF), "--served-model-name", NAME,
            "--port", str(a.port), "--max-num-seqs", str(a.requests), "--max-model-len", "512", "--log-level", "warning",
            "--max-loras", str(len(ADAPTERS)), "--max-lora-rank", str(a.rank), "--lora-modules", *modules]
    proc = subprocess.Popen(argv, cwd=ROOT)
    base = f"http://127.0.0.1:{a.port}"
    rows = {"base": [], "adapters": []}
    try:
        wait_ready(base + "/v1/health/ready", proc)
        burst(base, [NAME] * 2 + list(ADAPTERS), 4)  # warm both paths
        for _ in range(a.rounds):
            rows["base"].append(burst(base, [NAME] * a.requests, a.tokens))
            rows["adapters"].append(burst(base, [ADAPTERS[i % len(ADAPTERS)] for i in range(a.requests)], a.tokens))
    finally:
        proc.terminate()
        proc.wait(60)
    base_tps, lora_tps = statistics.median(rows["base"]), statistics.median(rows["adapters"])
    ratio = lora_tps / base_tps
    result = {**record, **load_record(),
              "requests": a.requests, "tokens_each": a.tokens, "rounds": a.rounds, "adapters": len(ADAPTERS),
              "rank": a.rank, "base_tokens_per_s": [round(x, 1) for x in rows["base"]],
              "adapter_tokens_per_s": [round(x, 1) for x in rows["adapters"]],
              "ratio_adapters_over_base": round(ratio, 3), "goal": 0.7}
    out = Path(a.out)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"base {base_tps:.1f} tok/s, {len(ADAPTERS)} adapters {lora_tps:.1f} tok/s: ratio {ratio:.2f} (goal >= 0.7)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
