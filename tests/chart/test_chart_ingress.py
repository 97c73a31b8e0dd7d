"""An Ingress, a LoadBalancer or NodePort Service and an HTTPRoute from a Gateway take the model's API
beyond the cluster: the chart renders them only with an API key (auth.existingSecret or auth.apiKey) or
when auth.allowUnauthenticated says open on purpose, and otherwise fails the render (helm's `fail`) with
one message naming the value and both ways out. One rule (packager.requireKey). Real Helm."""
from __future__ import annotations

import subprocess
import sys

import helm_python as helm
import pytest

from chart_checks import REPO, by_kind, plan, plan_file, render, validate
from packager.chart import write_chart

INGRESS = {"enabled": True, "className": "nginx", "host": "llm.example.com"}


@pytest.fixture(scope="module")
def chart(tmp_path_factory):
    return write_chart(plan("cpu-smollm2"), tmp_path_factory.mktemp("ingress"))


def test_an_ingress_without_a_key_is_refused_by_helm(chart):
    with pytest.raises(helm.HelmError) as e:
        render(chart, {"ingress": INGRESS})
    msg = str(e.value)
    assert "ingress.enabled: the Ingress would serve the model's API with no key" in msg, msg
    assert "auth.existingSecret" in msg and "auth.apiKey" in msg and "auth.allowUnauthenticated=true" in msg


ROUTE = {"router": {"enabled": True, "httpRoute": {"gateway": "inference-gw"}}}


@pytest.mark.parametrize("values,where", [
    ({"service": {"type": "LoadBalancer"}}, "service.type: a LoadBalancer Service"),
    ({"service": {"type": "NodePort"}}, "service.type: a NodePort Service"),
    (ROUTE, "router.httpRoute.gateway: the HTTPRoute from the Gateway"),
], ids=["LoadBalancer", "NodePort", "HTTPRoute"])
def test_every_way_out_of_the_cluster_needs_a_key(chart, values, where):
    with pytest.raises(helm.HelmError) as e:
        render(chart, values)
    assert where + " would serve the model's API with no key" in str(e.value), str(e.value)
    for ok in ({"auth": {"existingSecret": "llm-key"}}, {"auth": {"allowUnauthenticated": True}}):
        assert by_kind(render(chart, {**values, **ok}), "Service")


def test_inside_the_cluster_needs_no_key(chart):
    assert by_kind(render(chart, {"service": {"type": "ClusterIP"}}), "Service")
    assert by_kind(render(chart, {"router": {"enabled": True}}), "InferencePool")


@pytest.mark.parametrize("values", [
    {"ingress": INGRESS, "auth": {"existingSecret": "llm-key"}},
    {"ingress": INGRESS, "auth": {"apiKey": "sk-ingress-test-0123"}},
    {"ingress": INGRESS, "auth": {"allowUnauthenticated": True}},
], ids=["existing secret", "key from values", "open on purpose"])
def test_an_ingress_renders_with_a_key_or_when_open_on_purpose(chart, values):
    objs = render(chart, values)
    (ingress,) = by_kind(objs, "Ingress")
    validate(ingress)
    assert ingress["spec"]["rules"][0]["host"] == "llm.example.com"


def test_no_ingress_needs_no_key(chart):
    assert not by_kind(render(chart, {}), "Ingress")
    assert not by_kind(render(chart, {"auth": {"allowUnauthenticated": True}}), "Ingress")


def test_the_schema_knows_the_key_and_its_type(run_cli, tmp_path):
    code, _, err = run_cli("chart", "--plan", str(plan_file("cpu-smollm2", tmp_path)), "--out", str(tmp_path / "o"),
                           "--set", "auth.allowUnauthenticated=maybe")
    assert code == 2 and "auth.allowUnauthenticated" in err, err


def test_deploy_says_why_in_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "packager.cli", "deploy", "--plan",
                           str(plan_file("cpu-smollm2", tmp_path)), "--set", "ingress.enabled=true", "--dry-run"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "the Ingress would serve the model's API with no key" in proc.stderr
