"""Through the real planner: every example manifest pair that plans gives a chart whose objects validate."""
from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from chart_checks import ALL_FEATURES, REPO, by_kind, pod_specs, render, validate
from packager.chart import write_chart
from packager.planner import plan_files

MODELS = sorted((REPO / "manifests" / "models").glob("*.yaml"))
HARDWARE = sorted((REPO / "manifests" / "hardware").glob("*.yaml"))
GPU_KEYS = {"nvidia": "nvidia.com/gpu", "amd": "amd.com/gpu"}


def test_examples_exist():
    assert any(m.stem.startswith("smollm2") for m in MODELS) and any(h.stem == "cpu" for h in HARDWARE)


@pytest.mark.parametrize("hw", HARDWARE, ids=lambda p: p.stem)
def test_every_example_pair(tmp_path, hw):
    charted = 0
    for model in MODELS:
        plan = plan_files(str(model), str(hw)).to_dict()
        if plan["selected"] is None:
            assert plan["advice"], f"{model.stem} on {hw.stem}: no profile and no advice"
            continue
        sel = plan["selected"]
        objs = render(write_chart(plan, tmp_path / model.stem), ALL_FEATURES)
        for obj in objs:
            validate(obj)
        for spec in pod_specs(objs):
            c = spec["containers"][0]
            assert {"name": "PACKAGER_PROFILE", "value": sel["name"]} in c["env"]
            key = GPU_KEYS.get(sel["vendor"])
            if key:
                assert c["resources"]["limits"][key] == sel["devices_per_node"]
            else:
                assert not set(c["resources"]["limits"]) - {"memory"}
        charted += 1
    assert charted, f"no example model plans on {hw.stem}"


def test_multi_node_plan_renders_a_leader_worker_set(tmp_path):
    hw = tmp_path / "l4-2x4.yaml"
    hw.write_text(yaml.safe_dump({"name": "gke-l4-2x4", "pools": [
        {"name": "l4", "accelerator": "nvidia-l4", "count": 4, "nodes": 2, "cpu_cores": 48,
         "memory_gib": 192, "cloud": "gcp"}]}))
    # Without its AWQ variant, 70B in bf16 needs both nodes of 4 x L4.
    model = yaml.safe_load((REPO / "manifests" / "models" / "llama-3.1-70b-instruct.yaml").read_text())
    model["serving"].pop("quantized_variants")
    manifest = tmp_path / "llama-70b-bf16.yaml"
    manifest.write_text(yaml.safe_dump(model))
    plan = plan_files(str(manifest), str(hw)).to_dict()
    assert plan["selected"]["nodes"] == 2, plan["selected"]["name"]
    objs = render(write_chart(plan, tmp_path / "out"), ALL_FEATURES)
    for obj in objs:
        validate(obj)
    assert not by_kind(objs, "Deployment")
    (lws,) = by_kind(objs, "LeaderWorkerSet")
    assert lws["spec"]["leaderWorkerTemplate"]["size"] == 2
    leader = lws["spec"]["leaderWorkerTemplate"]["leaderTemplate"]["spec"]
    assert leader["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-l4"}
    assert leader["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 4


def test_chart_command_with_manifests(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "packager.cli", "chart",
         str(REPO / "manifests" / "models" / "llama-3.1-8b-instruct.yaml"),
         "--hardware", str(REPO / "manifests" / "hardware" / "amd-mi300x-x8.yaml"), "--out", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    values = yaml.safe_load((tmp_path / "llama-3.1-8b-instruct" / "values.yaml").read_text())
    assert values["accelerator"]["resourceKey"] == "amd.com/gpu"
    assert values["nodeSelector"] == {"node.kubernetes.io/instance-type": "Standard_ND96isr_MI300X_v5"}
