"""Done-when of issue 24: `packager serve all-minilm-l6-v2` answers /v1/embeddings through the openai
client with vectors at cosine >= 0.999 to transformers' reference; SIGTERM drains and exits 0."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from packager.detect.cpu import native_bf16
from runtime.conftest import free_port, wait_ready

from .conftest import EMBED_NAME, TEXTS

pytestmark = [pytest.mark.slow, pytest.mark.model_output]


def test_packager_serve_the_embedding_model(tmp_path, ref_vectors):
    import openai
    import torch

    port = free_port()
    err = tmp_path / "serve.err"
    with open(err, "wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "packager.cli", "serve", "all-minilm-l6-v2", "--port", str(port)],
                                cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=fh,
                                env={"PACKAGER_CACHE_DIR": str(tmp_path / "cache"), **_env()})
    try:
        wait_ready(proc, f"http://127.0.0.1:{port}", lambda: err.read_text()[-3000:])
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none", max_retries=0, timeout=120)
        got = client.embeddings.create(model=EMBED_NAME, input=TEXTS)
        cos = torch.nn.functional.cosine_similarity(torch.tensor([d.embedding for d in got.data]), ref_vectors, dim=-1)
        assert cos.min().item() >= 0.999, cos.tolist()
        assert (tmp_path / "cache" / "unpacked").is_dir()  # the zip was unpacked where it was told
        text = err.read_text()
        # bf16 matmuls where this CPU has native bf16 (packager.detect.cpu.native_bf16), else fp32
        precision = "bf16" if native_bf16() else "fp32"
        assert f"profile   cpu-{precision}-tp1-pp1-throughput" in text[text.index("ready in "):]
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(60)
    assert rc == 0, err.read_text()[-3000:]


def _env() -> dict:
    import os

    return {k: v for k, v in os.environ.items() if k != "PACKAGER_CACHE_DIR"}
