"""Volume mode with LoRA adapters (issue 22, item 5): the launcher downloads each adapter into the claim
beside the weights (its own directory, marker and digest checks, a plain mirror holding it at its place
under the model dir), a restart downloads nothing, a changed adapter file is refused, and the engine's
--lora-modules follow the weights when they live elsewhere than the image's model dir.
Real processes' code paths, a real loopback HTTP mirror; no mocks."""
from __future__ import annotations

import hashlib
import http.server
import json
from contextlib import contextmanager
from pathlib import Path

import pytest

import launch_steps as launcher
from loopback_http import serving
from runtimes.launch.decide import relocate_model
from runtimes.launch.weights import adapter_specs
from runtimes.layout import MODEL_DIR, WEIGHTS_MARKER, adapter_dir

ADIR = adapter_dir("sql")[len(MODEL_DIR) + 1:]
FILES = {"model.safetensors": bytes(range(256)) * 512, "config.json": b'{"model_type": "llama"}',
         f"{ADIR}/adapter_config.json": b'{"peft_type": "LORA", "r": 4}',
         f"{ADIR}/adapter_model.safetensors": bytes(range(255, -1, -1)) * 64}
DIGESTS = {rel: hashlib.sha256(body).hexdigest() for rel, body in FILES.items()}


@contextmanager
def mirror(seen: list):
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            rel = self.path.split("/repo/", 1)[-1]
            seen.append(rel)
            body = FILES.get(rel)
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args):
            pass

    with serving(H) as url:
        yield url + "/repo"


def config(cache: Path) -> dict:
    return {"runtimes": ["cpu"], "cache_dir": str(cache),
            "weights": {"mode": "volume", "dir": MODEL_DIR, "files": {k: v for k, v in DIGESTS.items() if "/" not in k},
                        "source": {"kind": "huggingface", "repo": "org/model", "revision": "c" * 40}},
            "adapters": [{"name": "sql", "dir": adapter_dir("sql"),
                          "files": {k.rsplit("/", 1)[1]: v for k, v in DIGESTS.items() if "/" in k},
                          "source": {"kind": "huggingface", "repo": "org/sql", "revision": "d" * 40}}]}


def start(cfg: dict, env: dict, log=lambda m: None) -> None:
    """The launcher's weights step, then its adapters step, as runtimes/launch/__main__.py runs them."""
    launcher.ensure_weights(cfg, env, log=log)
    base = launcher.base_dir(cfg, env)
    for spec, aenv in adapter_specs(cfg, env):
        launcher.ensure(spec, launcher.target_dir(spec, base), aenv, log=log)


def test_adapters_land_in_the_claim_beside_the_weights_once(tmp_path):
    seen: list = []
    claim = tmp_path / "claim"
    with mirror(seen) as url:
        env = {"PACKAGER_MODEL_DIR": str(claim), "PACKAGER_WEIGHTS_URL": url}
        start(config(tmp_path / "cache"), env)
        assert sorted(seen) == sorted(FILES)  # each file once, the adapter's at its place under the model dir
        for rel, body in FILES.items():
            assert (claim / rel).read_bytes() == body
        marker = json.loads((claim / ADIR / WEIGHTS_MARKER).read_text())
        assert sorted(marker["files"]) == ["adapter_config.json", "adapter_model.safetensors"]
        logs: list[str] = []
        start(config(tmp_path / "cache"), env, log=logs.append)
        assert len(seen) == len(FILES) and sum("nothing to download" in m for m in logs) == 2
        # a changed adapter file is refused, never served
        (claim / ADIR / "adapter_model.safetensors").write_bytes(b"torn")
        with pytest.raises(launcher.LaunchError, match="adapter_model.safetensors: sha256"):
            start(config(tmp_path / "cache"), env)


def test_baked_adapters_are_not_downloaded(tmp_path):
    cfg = {**config(tmp_path / "cache"), "weights": {**config(tmp_path / "cache")["weights"], "mode": "baked"}}
    specs = adapter_specs(cfg, {})
    assert [s.mode for s, _ in specs] == ["baked"]
    launcher.ensure(specs[0][0], tmp_path / "nowhere", specs[0][1], log=lambda m: None)  # returns: the build checked them
    assert not (tmp_path / "nowhere").exists()


def test_lora_modules_follow_weights_that_live_elsewhere(tmp_path):
    claim = str(tmp_path / "claim")
    vllm = ["vllm", "serve", MODEL_DIR, "--enable-lora", "--lora-modules",
            json.dumps({"name": "sql", "path": adapter_dir("sql"), "base_model_name": "m"})]
    relocate_model(vllm, claim)
    assert vllm[2] == claim and json.loads(vllm[-1])["path"] == f"{claim}/{ADIR}"
    fallback = ["python3", "-m", "runtimes.fallback", "--model", f"{MODEL_DIR}/m.gguf", "--lora-modules",
                f"sql={adapter_dir('sql')}"]
    relocate_model(fallback, claim)
    assert fallback[4] == f"{claim}/m.gguf" and fallback[-1] == f"sql={claim}/{ADIR}"
