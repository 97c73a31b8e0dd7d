"""One real CPU image per test session, built through the real CLI with the
debootstrap base, and one container of it serving on 127.0.0.1.

Without an engine these tests skip on a developer machine and FAIL under CI=true
(CI must run .ci/docker.sh first)."""
from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from packager.image import docker

ROOT = Path(__file__).resolve().parents[2]
BASE = os.environ.get("PACKAGER_BASE_IMAGE", "packager-base:bookworm")


def require_engine() -> str:
    cli = docker.docker_cli()
    ok, why = docker.engine_reachable(cli)
    if ok:
        ok = subprocess.run([cli, "image", "inspect", BASE], capture_output=True).returncode == 0
        why = f"base image {BASE} is missing"
    if ok:
        return cli
    msg = f"Docker engine not usable ({why}); run `bash .ci/docker.sh` as root"
    if os.environ.get("CI") == "true":
        pytest.fail(msg + " (CI=true: image tests must run, never skip)", pytrace=False)
    pytest.skip(msg)


def packager_cli(*args: str, env: dict | None = None, timeout: int = 1800) -> subprocess.CompletedProcess:
    code = "import sys; from packager.cli import main; sys.argv[0] = 'packager'; main()"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=ROOT,
                          env=env or dict(os.environ), timeout=timeout)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def helpers():
    """The module's helpers for tests (conftest modules are not importable by name everywhere)."""
    import types
    return types.SimpleNamespace(free_port=free_port, packager_cli=packager_cli)


@pytest.fixture(scope="session")
def built_image(tmp_path_factory):
    cli = require_engine()
    out = tmp_path_factory.mktemp("image-out")
    tag = f"packager-test/smollm2:{os.getpid()}"
    token = "hf_FAKE" + secrets.token_hex(16)  # the secret that must leave no trace
    api_key = "sk-canary-" + secrets.token_hex(16)  # an API key in the builder's environment must not be baked
    env = dict(os.environ, PACKAGER_TEST_HF_TOKEN=token, PACKAGER_API_KEY=api_key, VLLM_API_KEY=api_key)
    t0 = time.monotonic()
    proc = packager_cli("build", "--hardware", "cpu", "--out", str(out), "--tag", tag, "--base-image", BASE,
                        "--opt", "secret=id=hf_token,env=PACKAGER_TEST_HF_TOKEN", env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    info = {"cli": cli, "tag": tag, "token": token, "api_key": api_key, "out": out, "stdout": proc.stdout, "stderr": proc.stderr,
            "context": out / "smollm2-135m-instruct" / "context", "seconds": time.monotonic() - t0,
            "inspect": docker.inspect(tag, cli)}
    yield info
    subprocess.run([cli, "image", "rm", "-f", tag], capture_output=True)


@contextlib.contextmanager
def running(cli: str, tag: str, name: str, timeout: float = 600):
    """The image as a container on the host network (loopback, a free port), ready; removed after.
    Yields {name, port, cli, logs}; a container that exits or never gets ready fails with its logs."""
    port = free_port()
    run = subprocess.run([cli, "run", "-d", "--name", name, "--network", "host", "-e", "PACKAGER_HOST=127.0.0.1",
                          "-e", f"PACKAGER_PORT={port}", tag], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr

    def logs() -> str:
        got = subprocess.run([cli, "logs", name], capture_output=True, text=True)
        return got.stdout[-3000:] + got.stderr[-3000:]

    try:
        deadline = time.monotonic() + timeout
        while not docker.probe_ready(port):
            state = json.loads(subprocess.run([cli, "inspect", name], capture_output=True, text=True).stdout)[0]
            if not state["State"]["Running"]:
                pytest.fail(f"container exited ({state['State']['ExitCode']}):\n{logs()}")
            if time.monotonic() > deadline:
                pytest.fail(f"not ready after {timeout} s:\n{logs()}")
            time.sleep(1)
        yield {"name": name, "port": port, "cli": cli, "logs": logs}
    finally:
        subprocess.run([cli, "rm", "-f", name], capture_output=True)


@pytest.fixture(scope="session")
def container(built_image):
    with running(built_image["cli"], built_image["tag"], f"packager-test-{os.getpid()}") as c:
        yield c
