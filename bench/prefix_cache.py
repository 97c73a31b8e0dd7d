"""Time to first token with and without prefix caching, in one run.

    python bench/prefix_cache.py [--requests 16] [--system-tokens 1000]

16 chat requests share a system prompt of about 1,000 tokens (few-shot
examples, as an assistant product sends on every turn) and differ in their
question. Each is sent after the previous one answered (streaming, 4 tokens),
to our server started twice on the same GGUF: ``--no-enable-prefix-caching``
(the baseline) and the default (prefix caching on). Writes
bench/results/prefix_cache.json and prints the ratio of mean TTFTs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchinfo import load_record, machine_record  # noqa: E402
from runtime_throughput import GGUF, NAME, TOPICS, model_dir, wait_ready  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = "Q: Name a fact about {t}. A: Here is one short, true fact about {t}, stated plainly.\n"


def system_prompt(tokens: int) -> str:
    text, i = "You answer in one sentence. Examples follow.\n", 0
    while len(text) < tokens * 4.2:  # ~4.2 characters per token for this tokenizer
        text += EXAMPLE.format(t=TOPICS[i % len(TOPICS)])
        i += 1
    return text


def ttfts(port: int, flags: list[str], system: str, n: int) -> tuple[list[float], int, dict]:
    argv = [sys.executable, "-m", "runtimes.fallback", "--model", str(model_dir() / GGUF), "--served-model-name", NAME,
            "--port", str(port), "--max-model-len", "2048", "--max-num-seqs", "4", "--log-level", "warning", *flags]
    proc = subprocess.Popen(argv, cwd=ROOT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base + "/v1/health/ready", proc)
        out, prompt_tokens = [], 0
        for i in range(n):
            body = {"model": NAME, "max_tokens": 4, "temperature": 0, "stream": True,
                    "stream_options": {"include_usage": True},
                    "messages": [{"role": "system", "content": system},
                                 {"role": "user", "content": f"Name a fact about {TOPICS[(i * 7) % len(TOPICS)]}."}]}
            t0 = time.perf_counter()
            first = None
            with httpx.stream("POST", base + "/v1/chat/completions", json=body, timeout=300) as r:
                r.raise_for_status()
                for line in r.iter_lines():
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    chunk = json.loads(line[6:])
                    if first is None and chunk.get("choices") and chunk["choices"][0]["delta"].get("content"):
                        first = time.perf_counter() - t0
                    if chunk.get("usage"):
                        prompt_tokens = chunk["usage"]["prompt_tokens"]
            out.append(first)
        metrics = httpx.get(base + "/metrics").text
        counters = {k: float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                    for k in ("vllm:prefix_cache_queries_total", "vllm:prefix_cache_hits_total") if line.startswith(k + "{")}
        return out, prompt_tokens, counters
    finally:
        proc.terminate()
        proc.wait(60)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=16)
    ap.add_argument("--system-tokens", type=int, default=1000)
    ap.add_argument("--port", type=int, default=18790)
    ap.add_argument("--out", default=str(ROOT / "bench/results/prefix_cache.json"))
    a = ap.parse_args()
    info = machine_record()
    system = system_prompt(a.system_tokens)
    cold, prompt_tokens, _ = ttfts(a.port, ["--no-enable-prefix-caching"], system, a.requests)
    warm, _, counters = ttfts(a.port + 1, [], system, a.requests)
    mean_cold, mean_warm = statistics.mean(cold), statistics.mean(warm)
    result = {
        **info,
        "model": NAME,
        "requests": a.requests,
        "prompt_tokens": prompt_tokens,
        "ttft_without_cache_s": round(mean_cold, 4),
        "ttft_with_cache_s": round(mean_warm, 4),
        "ratio": round(mean_cold / mean_warm, 2),
        "ttft_with_cache_after_first_s": round(statistics.mean(warm[1:]), 4),
        "ttft_median_without_s": round(statistics.median(cold), 4),
        "ttft_median_with_s": round(statistics.median(warm), 4),
        "prefix_cache": counters,
        **load_record(),
    }
    Path(a.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"TTFT without prefix caching {mean_cold * 1000:.0f} ms, with {mean_warm * 1000:.0f} ms: "
          f"{result['ratio']:.1f}x ({prompt_tokens} prompt tokens, {a.requests} requests)")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
