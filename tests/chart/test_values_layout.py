"""Issue 25, item 3: values.yaml a person can review. The settings people change first lead, documented; the
plan lives in the chart's plan.json, reaches the pods once through the ConfigMap, and stays out of values."""
from __future__ import annotations

import json

import yaml

from chart_checks import REPO, one, render
from packager.chart import chart_values, write_chart
from packager.chart.valuesfile import render_values
from packager.planner import plan_files

LLAMA8B = str(REPO / "manifests" / "models" / "llama-3.1-8b-instruct.yaml")
FIRST = ["image", "imagePullSecrets", "replicaCount", "resources", "accelerator", "nodeSelector", "tolerations",
         "affinity", "priorityClassName", "service", "ingress", "auth", "autoscaling"]


def top_keys(text: str) -> list[str]:
    return [line.split(":")[0] for line in text.splitlines() if line and line[0].isalpha()]


def test_the_8xh100_chart_values_are_short_ordered_and_documented(tmp_path):
    plan = plan_files(LLAMA8B, "nvidia-h100-sxm-80gb:8", "throughput").to_dict()
    chart = write_chart(plan, tmp_path)
    text = (chart / "values.yaml").read_text()
    assert len(text.splitlines()) < 300
    keys = top_keys(text)
    assert keys[:len(FIRST)] == FIRST  # what people change first, at the top
    lines = text.splitlines()
    for key in ("image", "imagePullSecrets", "replicaCount", "resources", "accelerator", "nodeSelector", "service",
                "ingress", "auth", "autoscaling"):
        at = lines.index(next(line for line in lines if line.startswith(f"{key}:")))
        assert lines[at - 1].startswith("#"), f"{key} has no comment above it"
    values = yaml.safe_load(text)
    assert values["plan"] == {} and "candidates" not in text
    # ... and exactly what `packager chart` computed, the plan aside
    assert values == dict(chart_values(plan), plan={})
    assert json.loads((chart / "plan.json").read_text()) == chart_values(plan)["plan"]


def test_the_configmap_carries_the_plan_file_once_and_values_can_still_replace_it(tmp_path):
    plan = plan_files(LLAMA8B, "nvidia-h100-sxm-80gb:8", "throughput").to_dict()
    chart = write_chart(plan, tmp_path)
    cm = one(render(chart), "ConfigMap")
    mounted = json.loads(cm["data"]["plan.json"])
    assert mounted == json.loads((chart / "plan.json").read_text())
    assert mounted["selected"]["fill"]["replicas"] == 8
    assert len(cm["data"]["plan.json"].splitlines()) == 1  # compact: `deploy --dry-run` is not the plan's pages
    pinned = {"selected": {"name": "x"}}
    assert json.loads(one(render(chart, {"plan": pinned}), "ConfigMap")["data"]["plan.json"]) == pinned


def test_unchanged_blocks_keep_every_comment_and_new_keys_come_last():
    source = (REPO / "helm" / "values.yaml").read_text()
    values = yaml.safe_load(source)
    assert render_values(values, source) == source
    values["image"]["repository"] = "registry.example.com/team/llama"
    values["zzz"] = {"enabled": False}  # a key another chart part adds: kept, at the end
    text = render_values(values, source, "# header\n")
    assert yaml.safe_load(text) == values and text.startswith("# header\n")
    assert "  # When set, the pod pulls by digest" in text  # the changed block's child comments stay
    assert top_keys(text)[-1] == "zzz"
