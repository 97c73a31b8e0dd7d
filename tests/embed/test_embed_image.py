"""The embedding model's CPU image, one command (`packager build all-minilm-l6-v2`), as the LLM's: built offline
from the unpacked model, non-root, it serves /v1/embeddings at cosine >= 0.999 to the reference."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from image.conftest import BASE, free_port, packager_cli, require_engine  # tests/image's helpers
from packager.image import docker

from .conftest import EMBED_NAME, TEXTS

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.model_output]


@pytest.fixture(scope="module")
def container(tmp_path_factory):
    cli = require_engine()
    out = tmp_path_factory.mktemp("embed-image")
    tag = f"packager-test/minilm:{os.getpid()}"
    proc = packager_cli("build", "all-minilm-l6-v2", "--hardware", "cpu", "--out", str(out), "--tag", tag,
                        "--base-image", BASE)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    port, name = free_port(), f"packager-test-minilm-{os.getpid()}"
    try:
        run = subprocess.run([cli, "run", "-d", "--name", name, "--network", "host", "--read-only",
                              "--tmpfs", "/tmp", "--tmpfs", "/var/cache/packager:uid=1000",
                              "-e", "PACKAGER_HOST=127.0.0.1", "-e", f"PACKAGER_PORT={port}", tag],
                             capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
        deadline = time.monotonic() + 600
        while not docker.probe_ready(port):
            state = json.loads(subprocess.run([cli, "inspect", name], capture_output=True, text=True).stdout)[0]
            logs = subprocess.run([cli, "logs", name], capture_output=True, text=True)
            assert state["State"]["Running"], logs.stdout[-3000:] + logs.stderr[-3000:]
            assert time.monotonic() < deadline, logs.stderr[-3000:]
            time.sleep(1)
        yield {"cli": cli, "name": name, "port": port, "tag": tag}
    finally:
        subprocess.run([cli, "rm", "-f", name], capture_output=True)
        subprocess.run([cli, "image", "rm", "-f", tag], capture_output=True)


def test_the_image_serves_embeddings(container, ref_vectors):
    import openai
    import torch

    client = openai.OpenAI(base_url=f"http://127.0.0.1:{container['port']}/v1", api_key="none", max_retries=0,
                           timeout=120)
    got = client.embeddings.create(model=EMBED_NAME, input=TEXTS)
    cos = torch.nn.functional.cosine_similarity(torch.tensor([d.embedding for d in got.data]), ref_vectors, dim=-1)
    assert cos.min().item() >= 0.999, cos.tolist()
    uid = subprocess.run([container["cli"], "exec", container["name"], "id", "-u"], capture_output=True, text=True)
    assert uid.stdout.strip() == "1000"
    ls = subprocess.run([container["cli"], "exec", container["name"], "ls", "/opt/packager/model"],
                        capture_output=True, text=True)
    assert "config.json" in ls.stdout and "model.zip" not in ls.stdout  # the unpacked files, baked
