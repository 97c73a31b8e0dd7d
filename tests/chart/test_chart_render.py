"""Render the chart for each kind of plan; every object must pass the real schemas."""
from __future__ import annotations

import json

import helm_python as helm
import pytest

from chart_checks import ALL_FEATURES, REPO, by_kind, one, plan, pod_specs, render, validate
from packager.chart import write_chart

FIXTURES = ["cpu-smollm2", "nvidia-llama8b-tp2", "nvidia-llama70b-2x8", "amd-mi300x-llama8b"]


@pytest.fixture(scope="module")
def charts(tmp_path_factory):
    out = tmp_path_factory.mktemp("charts")
    return {name: write_chart(plan(name), out / name) for name in FIXTURES}


def _errors(report):
    return [m for m in report["messages"] if m["severity"] >= 3] + report["errors"]


def test_lint_source_chart():
    report = helm.lint(str(REPO / "packager" / "chart" / "helm"), strict=True, kube_version="v1.32.0")
    assert report["total_charts_linted"] == 1
    assert not _errors(report), report


@pytest.mark.parametrize("name", FIXTURES)
def test_lint_written_chart(charts, name):
    for values in (None, ALL_FEATURES):
        report = helm.lint(str(charts[name]), values, strict=True, kube_version="v1.32.0")
        assert not report["messages"] and not report["errors"], (name, report)


@pytest.mark.parametrize("name", FIXTURES)
@pytest.mark.parametrize("features", [{}, ALL_FEATURES, {"autoscaling": {"hpa": {"enabled": True}}}],
                         ids=["defaults", "all-features", "hpa"])
def test_every_object_validates(charts, name, features):
    objs = render(charts[name], features)
    assert objs
    for obj in objs:
        validate(obj)


def test_validation_catches_a_bad_object(charts):
    # The checks above must be able to fail: a misspelt field in a core and a CRD object.
    objs = render(charts["nvidia-llama70b-2x8"])
    svc = one(objs, "Service")
    svc["spec"]["prots"] = svc["spec"].pop("ports")
    with pytest.raises(AssertionError, match="prots"):
        validate(svc)
    lws = one(objs, "LeaderWorkerSet")
    lws["spec"]["leaderWorkerTemplate"]["sizes"] = 2
    with pytest.raises(AssertionError, match="sizes"):
        validate(lws)


def test_single_node_is_a_deployment(charts):
    objs = render(charts["nvidia-llama8b-tp2"])
    assert not by_kind(objs, "LeaderWorkerSet")
    dep = one(objs, "Deployment")
    assert dep["spec"]["strategy"]["type"] == "Recreate"  # GPUs are not free for a surge pod
    for kind in ("Service", "ServiceAccount", "ConfigMap"):
        one(objs, kind)


def test_multi_node_is_a_leader_worker_set_with_ray(charts):
    objs = render(charts["nvidia-llama70b-2x8"], ALL_FEATURES)
    assert not by_kind(objs, "Deployment")
    lws = one(objs, "LeaderWorkerSet")
    tmpl = lws["spec"]["leaderWorkerTemplate"]
    assert tmpl["size"] == 2
    leader = tmpl["leaderTemplate"]["spec"]["containers"][0]
    worker = tmpl["workerTemplate"]["spec"]["containers"][0]
    # One start path for every pod: the image's launcher (it puts our middleware on vLLM's import
    # path, reads the mounted plan, starts Ray); no shell line and no engine argv in the chart.
    for c, role in ((leader, "leader"), (worker, "worker")):
        assert "command" not in c and "args" not in c, c.get("command")
        env = {e["name"]: e.get("value") for e in c["env"]}
        assert env["PACKAGER_ROLE"] == role and env["PACKAGER_RAY_PORT"] == "6379"
        assert env["PACKAGER_PLAN"] == "/etc/packager/plan.json"
        assert env["PACKAGER_MODEL_DIR"] == "/opt/packager/model"  # the weights volume (RWX, below)
    for c in (leader, worker):
        assert c["resources"]["limits"]["nvidia.com/gpu"] == 8
    # Only leaders serve HTTP; the Service must not send requests to workers.
    assert one(objs, "Service")["spec"]["selector"]["app.kubernetes.io/component"] == "leader"
    assert "startupProbe" in leader and "startupProbe" not in worker
    assert one(objs, "ScaledObject")["spec"]["scaleTargetRef"]["kind"] == "LeaderWorkerSet"
    assert one(objs, "PersistentVolumeClaim")["spec"]["accessModes"] == ["ReadWriteMany"]


def test_optional_objects(charts):
    objs = render(charts["nvidia-llama8b-tp2"], ALL_FEATURES)
    so = one(objs, "ScaledObject")
    assert "vllm:num_requests_waiting" in so["spec"]["triggers"][0]["metadata"]["query"]
    assert so["spec"]["scaleTargetRef"]["kind"] == "Deployment"
    assert one(objs, "ServiceMonitor")["spec"]["endpoints"][0]["path"] == "/metrics"
    for kind in ("Ingress", "PodDisruptionBudget", "NetworkPolicy", "PersistentVolumeClaim"):
        one(objs, kind)
    assert "replicas" not in one(objs, "Deployment")["spec"]  # the autoscaler owns it
    hpa = one(render(charts["nvidia-llama8b-tp2"], {"autoscaling": {"hpa": {"enabled": True}}}),
              "HorizontalPodAutoscaler")
    assert hpa["spec"]["metrics"][0]["pods"]["metric"]["name"] == "vllm_num_requests_waiting"
    with pytest.raises(helm.HelmError, match="enable one"):
        render(charts["nvidia-llama8b-tp2"], {"autoscaling": {"hpa": {"enabled": True}, "keda": {"enabled": True}}})
    off = render(charts["nvidia-llama8b-tp2"])
    for kind in ("ScaledObject", "ServiceMonitor", "Ingress", "PodDisruptionBudget", "NetworkPolicy",
                 "HorizontalPodAutoscaler", "PersistentVolumeClaim"):
        assert not by_kind(off, kind), kind


def test_existing_claims(charts):
    objs = render(charts["cpu-smollm2"], {"weights": {"mode": "volume", "volume": {"existingClaim": "models"}},
                                          "cache": {"existingClaim": "hf-cache"}})
    assert not by_kind(objs, "PersistentVolumeClaim")
    vols = {v["name"]: v for v in pod_specs(objs)[0]["volumes"]}
    assert vols["weights"]["persistentVolumeClaim"]["claimName"] == "models"
    assert vols["cache"]["persistentVolumeClaim"]["claimName"] == "hf-cache"


@pytest.mark.parametrize("name", FIXTURES)
def test_pod_contract(charts, name):
    objs = render(charts[name])
    p = plan(name)
    for spec in pod_specs(objs):
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["fsGroup"] == 1000
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        c = spec["containers"][0]
        sc = c["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"]["drop"] == ["ALL"]
        env = {e["name"]: e.get("value") for e in c["env"]}
        assert env["PACKAGER_PROFILE"] == p["selected"]["name"]
        assert "command" not in c and "args" not in c  # the image's launcher starts every pod
        # the launcher reads the mounted plan ConfigMap
        assert env["PACKAGER_PLAN"] == "/etc/packager/plan.json"
        plan_mount = next(m for m in c["volumeMounts"] if m["name"] == "plan")
        assert plan_mount["mountPath"] == "/etc/packager" and plan_mount["readOnly"] is True
        mounts = {m["mountPath"] for m in c["volumeMounts"]}
        assert {"/dev/shm", "/tmp", "/var/cache/packager"} <= mounts
        vols = {v["name"]: v for v in spec["volumes"]}
        assert vols["shm"]["emptyDir"]["medium"] == "Memory"
        if c["name"] != "worker":
            assert c["livenessProbe"]["httpGet"]["path"] == "/v1/health/live"
            assert c["readinessProbe"]["httpGet"]["path"] == "/v1/health/ready"
    cm = one(objs, "ConfigMap")
    assert json.loads(cm["data"]["plan.json"])["selected"]["name"] == p["selected"]["name"]


def test_helm_test_pod_calls_models(charts):
    objs = render(charts["cpu-smollm2"])
    pods = [o for o in by_kind(objs, "Pod") if o["metadata"]["annotations"].get("helm.sh/hook") == "test"]
    assert len(pods) == 1
    script = pods[0]["spec"]["containers"][0]["args"][0]
    assert "/v1/models" in script and "HuggingFaceTB/SmolLM2-135M-Instruct" in script
