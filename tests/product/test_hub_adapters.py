"""A Hub adapter (`source: {repo, revision}`) packaged both ways (issue 22, item 5), against a Hub-compatible
endpoint on 127.0.0.1 serving an adapter made here: `build` (baked) fetches it on the host at the pinned
revision and bakes it, checked by sha256; `build --weights volume` bakes nothing and the launcher downloads it
into the claim beside the weights, digests checked, once. A digest the manifest records that the files do
not have is exit 2 naming the field."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).parent))
from fake_hub import FakeHub  # noqa: E402

from runtimes.digests import sha256_file  # noqa: E402
from runtimes.launch.weights import adapter_specs, base_dir, ensure, target_dir  # noqa: E402
from runtimes.layout import MODEL_DIR, WEIGHTS_MARKER, adapter_dir  # noqa: E402
from tests.conftest import MODELS  # noqa: E402
from tests.lora_adapters import SMOL, write_adapter  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
REPO, SHA = "lora-org/sql-lora", "5e1" + "0" * 37
FILES = ("adapter_config.json", "adapter_model.safetensors")


def manifest(tmp_path: Path, digests: dict, repo: str = REPO) -> Path:
    doc = yaml.safe_load((MODELS / "smollm2-135m-instruct.yaml").read_text())
    doc["adapters"] = [{"name": "sql", "source": {"repo": repo, "revision": SHA, "sha256": digests},
                        "rank": 8, "target_modules": ["q_proj", "v_proj"]}]
    out = tmp_path / "model.yaml"
    out.write_text(yaml.safe_dump(doc, sort_keys=False))
    return out


def cli(*args: str, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "packager.cli", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **env}, timeout=600)


def test_a_hub_adapter_is_baked_or_downloaded_into_the_claim(tmp_path):
    adapter = write_adapter(tmp_path / "served", SMOL, 4, rank=8, targets=("q_proj", "v_proj"))
    digests = {f: sha256_file(adapter / f) for f in FILES}
    hub = FakeHub(REPO, adapter, SHA)
    env = {"HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_DISABLE_TELEMETRY": "1",
           "HF_HUB_OFFLINE": "0", "HF_TOKEN": ""}
    try:
        model = manifest(tmp_path, digests)
        r = cli("build", str(model), "--hardware", "cpu", "--no-image", "--out", "baked", cwd=tmp_path, env=env)
        assert r.returncode == 0, r.stderr[-3000:]
        ctx = tmp_path / "baked" / "smollm2-135m-instruct" / "context"
        rel = adapter_dir("sql")[len(MODEL_DIR) + 1:]
        for f in FILES:
            assert sha256_file(ctx / "model" / rel / f) == digests[f]
            assert f"{digests[f]} {rel}/{f}" in (ctx / "Dockerfile").read_text()
        assert any(SHA in p for p in hub.requests)  # fetched at the pinned revision

        r = cli("build", str(model), "--hardware", "cpu", "--no-image", "--weights", "volume", "--out", "vol",
                cwd=tmp_path, env=env)
        assert r.returncode == 0, r.stderr[-3000:]
        ctx = tmp_path / "vol" / "smollm2-135m-instruct" / "context"
        assert not (ctx / "model" / rel).exists()
        config = json.loads((ctx / "image.json").read_text())
        assert config["adapters"] == [{"name": "sql", "dir": adapter_dir("sql"), "files": digests,
                                       "source": {"kind": "huggingface", "repo": REPO, "revision": SHA}}]
        # the launcher's start: into the claim, digests checked; a restart fetches nothing
        claim = tmp_path / "claim"
        run_env = {"PACKAGER_MODEL_DIR": str(claim), "HF_ENDPOINT": hub.url}
        for _ in range(2):
            before = len(hub.requests)
            for spec, aenv in adapter_specs(config, run_env):
                ensure(spec, target_dir(spec, base_dir(config, run_env)), aenv, log=lambda m: None)
        assert len(hub.requests) == before  # the second start found the marker
        for f in FILES:
            assert sha256_file(claim / rel / f) == digests[f]
        assert (claim / rel / WEIGHTS_MARKER).is_file()

        bad = manifest(tmp_path, {**digests, "adapter_model.safetensors": "0" * 64})
        r = cli("build", str(bad), "--hardware", "cpu", "--no-image", "--out", "bad", cwd=tmp_path, env=env)
        assert r.returncode == 2 and "adapters[0].source.sha256.adapter_model.safetensors" in r.stderr
        assert "Traceback" not in r.stderr and not (tmp_path / "bad" / "smollm2-135m-instruct").exists()
        r = cli("build", str(manifest(tmp_path, digests, "lora-org/absent")), "--hardware", "cpu", "--no-image",
                "--out", "bad", cwd=tmp_path, env=env)
        assert r.returncode == 2 and "adapters[0].source.repo" in r.stderr and "'sql'" in r.stderr
    finally:
        hub.close()
