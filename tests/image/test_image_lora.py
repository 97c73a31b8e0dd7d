"""LoRA adapters packaged (issue 22, item 5): `packager build --adapter` bakes a seeded random PEFT
adapter into the real CPU image (checked by sha256 in the build, which runs --network none); the
container serves it as a model whose parent is the base, and a request naming it answers with the
same greedy tokens `packager serve --adapter` gives here for the same adapter."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import httpx
import pytest

from tests.image.conftest import ROOT, free_port, packager_cli, require_engine, running
from tests.runtime.conftest import wait_ready
from tests.lora_adapters import SMOL, write_adapter

pytestmark = [pytest.mark.docker, pytest.mark.slow]
BASE_MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
PROMPT = "Complete the sentence: The capital of France is"


@pytest.fixture(scope="module")
def lora_image(tmp_path_factory):
    cli = require_engine()
    root = tmp_path_factory.mktemp("lora-image")
    adapter = write_adapter(root / "adapters" / "sql", SMOL, 7, rank=8, alpha=16)
    tag = f"packager-test/smollm2-lora:{os.getpid()}"
    proc = packager_cli("build", "--hardware", "cpu", "--out", str(root / "out"), "--tag", tag, "--base-image",
                        os.environ.get("PACKAGER_BASE_IMAGE", "packager-base:bookworm"), "--adapter", f"sql={adapter}")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    try:
        yield {"cli": cli, "tag": tag, "adapter": adapter, "root": root,
               "context": root / "out" / "smollm2-135m-instruct" / "context"}
    finally:
        subprocess.run([cli, "image", "rm", "-f", tag], capture_output=True)


@pytest.fixture(scope="module")
def lora_container(lora_image):
    with running(lora_image["cli"], lora_image["tag"], f"packager-test-lora-{os.getpid()}") as c:
        yield c


def greedy(port: int, model: str, logprobs: bool = False) -> list:
    from openai import OpenAI

    client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", timeout=120)
    r = client.completions.create(model=model, prompt=PROMPT, max_tokens=12, temperature=0, logprobs=1)
    assert r.model == model
    got = r.choices[0].logprobs
    return list(got.token_logprobs) if logprobs else list(got.tokens)


def test_the_build_checks_the_adapter_files_by_sha256(lora_image):
    dockerfile = (lora_image["context"] / "Dockerfile").read_text()
    check = next(line for line in dockerfile.splitlines() if "sha256sum --check" in line)
    for fname in ("adapter_config.json", "adapter_model.safetensors"):
        from runtimes.digests import sha256_file

        assert f"{sha256_file(lora_image['adapter'] / fname)} adapters/" in check and fname in check
    image_plan = json.loads((lora_image["context"] / "plan.json").read_text())
    assert str(lora_image["root"]) not in json.dumps(image_plan)  # no build-host path travels


def test_the_adapter_is_a_model_whose_parent_is_the_base(lora_container):
    got = httpx.get(f"http://127.0.0.1:{lora_container['port']}/v1/models", timeout=10).json()["data"]
    by_id = {m["id"]: m for m in got}
    assert BASE_MODEL in by_id and "sql" in by_id, got
    assert by_id["sql"]["parent"] == BASE_MODEL


@pytest.mark.model_output
def test_the_container_answers_as_packager_serve_does(lora_image, lora_container, tmp_path):
    """The same adapter through `packager serve --adapter` here: the same greedy tokens (one request
    each, so batching cannot differ)."""
    port = free_port()
    code = "import sys; from packager.cli import main; sys.argv[0] = 'packager'; main()"
    log = open(tmp_path / "serve.log", "wb")
    proc = subprocess.Popen([sys.executable, "-c", code, "serve", "smollm2-135m-instruct", "--hardware", "cpu",
                             "--port", str(port), "--adapter", f"sql={lora_image['adapter']}"],
                            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    try:
        wait_ready(proc, f"http://127.0.0.1:{port}", lambda: (tmp_path / "serve.log").read_text(errors="replace")[-4000:],
                   timeout=600)
        here = greedy(port, "sql")
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    there = greedy(lora_container["port"], "sql")
    assert there == here
    # the adapter is applied: the base model's first token has another log-probability
    assert greedy(lora_container["port"], BASE_MODEL, True)[0] != greedy(lora_container["port"], "sql", True)[0]
