"""One real server (SmolLM2, subprocess on loopback) for every client test in
this directory: the openai SDK, langchain-openai and lm-eval talk to it."""

from __future__ import annotations

import pytest

from runtime.conftest import MODEL_NAME, ServerProcess  # tests/runtime's helpers (same rootdir)

MAX_LEN = 2048


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    s = ServerProcess(["--max-num-seqs", "8", "--max-model-len", str(MAX_LEN), "--max-queue-len", "64"],
                      tmp_path_factory.mktemp("clients") / "server.log")
    try:
        s.wait_ready()
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="session")
def base_url(server) -> str:
    return server.base + "/v1"


@pytest.fixture(scope="session")
def client(server):
    return server.openai(timeout=180)


__all__ = ["MAX_LEN", "MODEL_NAME"]
