"""`packager deploy`: dry run prints the manifests; without a cluster, a clear exit 2."""
from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from chart_checks import REPO, plan, plan_file, validate
from packager.deploy import deploy
from packager.errors import UserError


@pytest.fixture
def unreachable_kubeconfig(tmp_path, monkeypatch):
    """A kubeconfig naming an API server nobody serves (port 9 on loopback)."""
    cfg = tmp_path / "kubeconfig"
    cfg.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "nowhere",
        "clusters": [{"name": "nowhere", "cluster": {"server": "https://127.0.0.1:9"}}],
        "contexts": [{"name": "nowhere", "context": {"cluster": "nowhere", "user": "u"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
    }))
    monkeypatch.setenv("KUBECONFIG", str(cfg))
    return cfg


def test_dry_run_prints_valid_manifests():
    text = deploy(plan("nvidia-llama70b-2x8"), namespace="ai", release="l70", dry_run=True,
                  sets=["serviceMonitor.enabled=true"])
    objs = [o for o in yaml.safe_load_all(text) if o]
    kinds = {o["kind"] for o in objs}
    assert {"LeaderWorkerSet", "Service", "ServiceAccount", "ConfigMap", "ServiceMonitor", "Pod"} <= kinds
    assert "# Source: llama-3.1-70b-instruct/templates/leaderworkerset.yaml" in text
    for obj in objs:
        validate(obj)
        assert obj["metadata"]["name"].startswith("l70")


def test_no_cluster_is_a_user_error(unreachable_kubeconfig):
    with pytest.raises(UserError) as e:
        deploy(plan("cpu-smollm2"), namespace="ai")
    assert "no reachable Kubernetes cluster" in e.value.message
    assert "--dry-run" in e.value.hint


def test_bad_release_name(unreachable_kubeconfig):
    with pytest.raises(UserError) as e:
        deploy(plan("cpu-smollm2"), release="Bad_Name", dry_run=True)
    assert e.value.field == "--release"


def test_command_exits_2_without_a_cluster(unreachable_kubeconfig, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "packager.cli", "deploy", "--plan", str(plan_file("cpu-smollm2", tmp_path)),
         "--namespace", "ai"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "no reachable Kubernetes cluster" in proc.stderr and "--dry-run" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_command_dry_run_and_chart(tmp_path):
    run = lambda *a: subprocess.run([sys.executable, "-m", "packager.cli", *a], cwd=REPO,
                                    capture_output=True, text=True, timeout=120)
    proc = run("deploy", "--plan", str(plan_file("cpu-smollm2", tmp_path)), "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert "kind: Deployment" in proc.stdout
    proc = run("chart", "--plan", str(plan_file("amd-mi300x-llama8b", tmp_path)), "--out", str(tmp_path),
               "--set", "replicaCount=2")
    assert proc.returncode == 0, proc.stderr
    values = yaml.safe_load((tmp_path / "llama-3.1-8b-instruct" / "values.yaml").read_text())
    assert values["replicaCount"] == 2 and values["accelerator"]["resourceKey"] == "amd.com/gpu"
    proc = run("chart", "--plan", str(plan_file("amd-mi300x-llama8b", tmp_path)), "--out", str(tmp_path),
               "--set", "replicaCount=two")
    assert proc.returncode == 2 and "replicaCount" in proc.stderr
