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


def test_the_dry_run_names_an_adapter_a_start_could_not_find(tmp_path):
    """PACKAGER_DRY_RUN=1 (what `packager rehearse` reads): a volume-mode start whose claim lacks a local
    adapter is a problem named in the record; a Hub adapter would be downloaded, so it is none."""
    import subprocess
    import sys

    from packager.planner import plan_files
    from tests.lora_adapters import SMOL, write_adapter

    root = Path(__file__).resolve().parents[2]
    write_adapter(tmp_path / "sql", SMOL, 1, rank=4)
    gguf = f"{MODEL_DIR}/SmolLM2-135M-Instruct.Q4_1.gguf"
    plan = plan_files(str(root / "manifests" / "models" / "smollm2-135m-instruct.yaml"), "cpu", model_ref=gguf,
                      adapters=(f"sql={tmp_path / 'sql'}",)).to_dict()
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    claim = tmp_path / "claim"
    claim.mkdir()
    (claim / "SmolLM2-135M-Instruct.Q4_1.gguf").write_bytes(b"stand-in")

    def problems(source: dict) -> list[str]:
        cfg = {"family": "cpu", "runtimes": ["cpu"], "port": 8000,
               "weights": {"mode": "volume", "dir": MODEL_DIR, "files": {"SmolLM2-135M-Instruct.Q4_1.gguf": ""}},
               "adapters": [{"name": "sql", "dir": adapter_dir("sql"), "files": {}, "source": source}]}
        (tmp_path / "image.json").write_text(json.dumps(cfg))
        env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(root), "PACKAGER_DRY_RUN": "1", "HOME": "/nonexistent",
               "PACKAGER_PLAN": str(tmp_path / "plan.json"), "PACKAGER_IMAGE_CONFIG": str(tmp_path / "image.json"),
               "PACKAGER_MODEL_DIR": str(claim), "PACKAGER_CACHE_DIR": str(tmp_path / "cache")}
        proc = subprocess.run([sys.executable, "-m", "runtimes.launcher"], capture_output=True, text=True, timeout=120,
                              env=env, cwd=root)
        rec = json.loads(proc.stdout)
        assert f"sql={claim}/{ADIR}" in rec["argv"], rec["argv"]  # the engine reads it from the claim
        return [p for p in rec["problems"] if p.startswith("adapter")]

    assert problems({}) and f"{claim}/{ADIR}" in problems({})[0]
    assert problems({"kind": "huggingface", "repo": "org/sql", "revision": "d" * 40}) == []
