"""`packager bundle` of the embedding model, one command as for the LLM: the image, the unpacked model as a
signed ModelPack artifact, chart, plan and SBOM under one signed release statement, and `packager verify`
passes on it (public keys only)."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tests.supply.conftest import BASE, keys, need, packager, registry  # noqa: F401  (fixtures: keys, registry)

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def test_bundle_and_verify(keys, registry, tmp_path):  # noqa: F811
    from tests.image.conftest import require_engine

    require_engine()
    need("skopeo", "gpg", "cyclonedx-py")
    tag = f"packager-test/minilm-supply:{os.getpid()}"
    out = tmp_path / "minilm.bundle.tar"
    try:
        proc = packager("bundle", "all-minilm-l6-v2", "--hardware", "cpu", "--keys", str(keys.directory),
                        "--out", str(out), "--base-image", BASE, "--tag", tag, "--registry", registry)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
        check = packager("verify", str(out), "--keys", str(keys.directory))
        assert check.returncode == 0, check.stdout + check.stderr
        for what in ("release statement", "weights signature", "image signature", "chart signature", "plan",
                     "model.safetensors", "1_Pooling/config.json"):
            assert what in check.stdout, what
        assert "FAIL" not in check.stdout
    finally:
        subprocess.run(["docker", "image", "rm", "-f", tag, f"{registry}/{tag}"], capture_output=True)
        shutil.rmtree(tmp_path, ignore_errors=True)
