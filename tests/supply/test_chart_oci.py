"""weights.mode=oci in the chart: an image volume validated against Kubernetes 1.33's schema, or the
modelcar init container; both mount the artifact read-only at the model dir, as volume mode does."""
from __future__ import annotations

import pytest
import yaml
from kubernetes_validate import validate
from kubernetes_validate.utils import ValidationError

from packager.deploy import render_manifests
from packager.errors import UserError

ARTIFACT = "registry.example:5000/packager/m-weights@sha256:" + "ab" * 32


@pytest.fixture(scope="module")
def plan():
    from packager.planner import plan_files
    from tests.conftest import MODELS

    return plan_files(str(MODELS / "smollm2-135m-instruct.yaml"), "cpu").to_dict()


def pod(plan, tmp_path, *sets: str) -> dict:
    from packager.chart import write_chart

    chart = write_chart(plan, tmp_path, sets=["weights.mode=oci", f"weights.oci.artifact={ARTIFACT}", *sets])
    docs = [d for d in yaml.safe_load_all(render_manifests(chart, release="m", namespace="default")) if d]
    return next(d for d in docs if d["kind"] == "Deployment")


def _weights(spec: dict) -> tuple[dict, dict]:
    volume = next(v for v in spec["volumes"] if v["name"] == "weights")
    mount = next(m for m in spec["containers"][0]["volumeMounts"] if m["name"] == "weights")
    return volume, mount


def test_image_volume_on_kubernetes_133(plan, tmp_path):
    dep = pod(plan, tmp_path, "weights.oci.mount=image")
    spec = dep["spec"]["template"]["spec"]
    volume, mount = _weights(spec)
    assert volume["image"] == {"reference": ARTIFACT, "pullPolicy": "IfNotPresent"}
    assert mount == {"name": "weights", "mountPath": "/opt/packager/model", "readOnly": True}
    assert "initContainers" not in spec
    env = spec["containers"][0]["env"]
    assert {"name": "PACKAGER_MODEL_DIR", "value": "/opt/packager/model"} in env
    assert {"name": "PACKAGER_WEIGHTS_MODE", "value": "volume"} in env  # the launcher checks it as a volume
    validate(dep, "1.33.0", strict=True)
    with pytest.raises(ValidationError):  # the check is real: before image volumes existed, refused
        validate(dep, "1.30.0", strict=True)


def test_modelcar_init_container_for_older_clusters(plan, tmp_path):
    dep = pod(plan, tmp_path)
    spec = dep["spec"]["template"]["spec"]
    volume, mount = _weights(spec)
    assert volume == {"name": "weights", "emptyDir": {"sizeLimit": "50Gi"}} and mount["readOnly"] is True
    init = spec["initContainers"][0]
    assert init["name"] == "modelcar" and init["image"] == spec["containers"][0]["image"]
    assert init["command"][:3] == ["/opt/packager/venv/bin/python", "-m", "packager.supply.pull"]
    assert ARTIFACT in init["command"] and "--plain-http" not in init["command"]
    assert init["securityContext"] == spec["containers"][0]["securityContext"]  # restricted, like the server
    assert {"name": "weights", "mountPath": "/opt/packager/model"} in init["volumeMounts"]
    validate(dep, "1.29.0", strict=True)
    claim = pod(plan, tmp_path / "claim", "weights.oci.modelcar.existingClaim=weights-pvc")
    volume, _ = _weights(claim["spec"]["template"]["spec"])
    assert volume == {"name": "weights", "persistentVolumeClaim": {"claimName": "weights-pvc"}}


def test_artifact_must_be_pinned_by_digest(plan, tmp_path):
    from packager.chart import write_chart

    with pytest.raises(UserError, match="weights.oci.artifact"):
        write_chart(plan, tmp_path, sets=["weights.mode=oci", "weights.oci.artifact=registry.example/m-weights:latest"])
    chart = write_chart(plan, tmp_path / "x", sets=["weights.mode=oci"])
    with pytest.raises(UserError, match="weights.oci.artifact"):
        render_manifests(chart, release="m", namespace="default")
