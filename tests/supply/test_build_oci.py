"""`packager build --weights oci --push`: a code-only image whose labels name its SBOM and its weights
artifact by digest, the artifact pushed once (a rebuild uploads none of it), the chart mounting it."""
from __future__ import annotations

import json
import os
import re
import subprocess

import yaml

from runtimes.digests import sha256_file
from tests.supply.conftest import BASE, GGUF, need, packager


def test_build_weights_oci_pushes_the_artifact_once(registry, tmp_path):
    from packager.image import docker
    from tests.image.conftest import require_engine

    cli = require_engine()
    need("skopeo", "cyclonedx-py")
    tag = f"packager-test/smollm2-ocibuild:{os.getpid()}"
    args = ("build", "smollm2-135m-instruct", "--hardware", "cpu", "--weights", "oci", "--tag", tag,
            "--base-image", BASE, "--push", registry)
    try:
        first = packager(*args, "--out", str(tmp_path / "a"))
        assert first.returncode == 0, first.stderr[-3000:]
        out = tmp_path / "a" / "smollm2-135m-instruct"
        labels = docker.inspect(tag, cli)["Config"]["Labels"]
        assert labels["dev.packager.weights"] == "oci"
        assert labels["dev.packager.sbom"] == "sha256:" + sha256_file(out / "sbom.cdx.json")
        steps = {layer.step for layer in docker.history(tag, cli)}
        assert "weights" not in steps and "weights-check" not in steps  # code only
        config = json.loads((out / "context" / "image.json").read_text())
        assert config["weights"]["mode"] == "volume" and GGUF in config["weights"]["files"]
        values = yaml.safe_load((out / "chart" / "smollm2-135m-instruct" / "values.yaml").read_text())
        artifact = values["weights"]["oci"]["artifact"]
        assert values["weights"]["mode"] == "oci" and artifact.endswith("@" + labels["dev.packager.weights.artifact"])
        raw = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{artifact}"],
                             capture_output=True, check=True).stdout
        assert json.loads(raw)["artifactType"] == "application/vnd.cncf.model.manifest.v1+json"
        # built and pushed again: the weights are already in the registry, none of their bytes go up
        again = packager(*args, "--out", str(tmp_path / "b"))
        assert again.returncode == 0, again.stderr[-3000:]
        assert re.search(r"weights: \S+@sha256:\S+ .*uploaded 0\.0 MiB", again.stderr), again.stderr[-2000:]
    finally:
        subprocess.run([cli, "image", "rm", "-f", tag, f"{registry}/{tag}"], capture_output=True)
