"""The chart for an embedding model: lints, every object passes the real schemas, probes and autoscaling fit a
model without KV cache (the queue the embedding server reports), NOTES show /v1/embeddings."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "chart"))  # chart_checks, as tests/chart does

from chart_checks import ALL_FEATURES, by_kind, one, plan, pod_specs, render, validate  # noqa: E402

NAME = "cpu-minilm-embed"


@pytest.fixture(scope="module")
def chart(tmp_path_factory):
    from packager.chart import write_chart

    return write_chart(plan(NAME), tmp_path_factory.mktemp("chart") / NAME)


def test_lints_and_validates(chart):
    import helm_python as helm

    for values in (None, ALL_FEATURES):
        report = helm.lint(str(chart), values, strict=True, kube_version="v1.32.0")
        assert not report["messages"] and not report["errors"], report
    for features in ({}, ALL_FEATURES, {"autoscaling": {"hpa": {"enabled": True}}}):
        for obj in render(chart, features):
            validate(obj)


def test_probes_autoscaling_and_notes(chart):
    p = plan(NAME)
    assert p["model"]["task"] == "embed" and p["selected"]["estimates"]["kv_cache_tokens"] == 0
    objs = render(chart, ALL_FEATURES)
    (spec,) = pod_specs(objs)
    c = spec["containers"][0]
    assert c["livenessProbe"]["httpGet"]["path"] == "/v1/health/live"
    assert c["readinessProbe"]["httpGet"]["path"] == "/v1/health/ready"
    # the zip unpacks into the writable cache at start; the root filesystem stays read-only
    assert "/var/cache/packager" in {m["mountPath"] for m in c["volumeMounts"]}
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    # autoscaling on the request queue (which the embedding server reports), never on KV-cache use
    so = one(objs, "ScaledObject")
    query = so["spec"]["triggers"][0]["metadata"]["query"]
    assert "vllm:num_requests_waiting" in query and "kv_cache" not in query
    import helm_python as helm

    with helm.Chart.load(str(chart)) as ch:
        notes = ch.render(None, name="rel", namespace="ai", is_install=True)
    text = next(v for k, v in notes.items() if k.endswith("NOTES.txt"))
    assert "/v1/embeddings" in text and "chat/completions" not in text
    assert by_kind(objs, "Deployment")


def test_an_llm_chart_keeps_the_chat_example(tmp_path):
    import helm_python as helm

    from packager.chart import write_chart

    chart = write_chart(plan("cpu-smollm2"), tmp_path / "smol")
    with helm.Chart.load(str(chart)) as ch:
        notes = ch.render(None, name="rel", namespace="ai", is_install=True)
    text = next(v for k, v in notes.items() if k.endswith("NOTES.txt"))
    assert "chat/completions" in text and "/v1/embeddings" not in text
