"""router.enabled: the InferencePool, llm-d's endpoint picker, HTTPRoute and InferenceObjectives, rendered by
real Helm for the issue's three examples and checked as an API server would (Kubernetes 1.32 for built-in kinds,
the CRDs in shared/crds with their CEL rules for the rest)."""
from __future__ import annotations

import copy

import pytest
import yaml
from chart_checks import ALL_FEATURES, REPO, by_kind, one, plan, render, validate

from packager.chart.validate import validate_values
from packager.chart.values import values_from_plan
from packager.errors import UserError

CHART = REPO / "helm"
# The Done-when: the 8B on one L4, SmolLM2 on CPU, the 70B on 2x8 H100 (a LeaderWorkerSet).
EXAMPLES = ["nvidia-llama8b-l4", "cpu-smollm2", "nvidia-llama70b-2x8"]
ROUTER = {"enabled": True, "httpRoute": {"gateway": "inference-gateway", "gatewayNamespace": "gateways"},
          "objectives": [{"name": "interactive", "priority": 10}, {"name": "batch", "priority": -1}]}
ROUTER_KINDS = {"InferencePool", "HTTPRoute", "InferenceObjective"}


def values(name: str, **router) -> dict:
    v = copy.deepcopy(ALL_FEATURES)
    v.update(values_from_plan(plan(name)))
    v["router"] = {**copy.deepcopy(ROUTER), **router}
    validate_values(CHART, v)  # the chart's own schema first, as `packager chart` does
    return v


def pod_templates(objs: list[dict]) -> list[tuple[str, dict]]:
    """(who, labels) of every pod the chart makes: Deployments, LeaderWorkerSet leader and worker, bare Pods."""
    out = [(f"Deployment/{d['metadata']['name']}", d["spec"]["template"]["metadata"]["labels"])
           for d in by_kind(objs, "Deployment")]
    for lws in by_kind(objs, "LeaderWorkerSet"):
        t = lws["spec"]["leaderWorkerTemplate"]
        out += [("leader", t["leaderTemplate"]["metadata"]["labels"]),
                ("worker", t["workerTemplate"]["metadata"]["labels"])]
    out += [(f"Pod/{p['metadata']['name']}", p["metadata"]["labels"]) for p in by_kind(objs, "Pod")]
    return out


def selected(selector: dict, objs: list[dict]) -> list[str]:
    return [who for who, labels in pod_templates(objs) if all(labels.get(k) == v for k, v in selector.items())]


@pytest.mark.parametrize("name", EXAMPLES)
def test_every_object_is_valid_and_every_cel_rule_ran(name):
    objs = render(CHART, values(name))
    assert ROUTER_KINDS <= {o["kind"] for o in objs}
    unevaluated, evaluated = [], 0
    for obj in objs:
        checked = validate(obj)
        if checked and obj["kind"] in ROUTER_KINDS:
            evaluated += len(checked.evaluated)
            unevaluated += [f"{obj['kind']}: {u}" for u in checked.unevaluated]
    # Listed, never passed silently: every rule these kinds carry at the rendered fields ran in cel-python.
    assert unevaluated == []
    assert evaluated >= 20  # the HTTPRoute's and the pool's rules, counted so a walk that stops shows


@pytest.mark.parametrize("name", EXAMPLES)
def test_pool_selects_exactly_the_serving_pods(name):
    objs = render(CHART, values(name))
    pool = one(objs, "InferencePool")
    multi = bool(by_kind(objs, "LeaderWorkerSet"))
    expected = ["leader"] if multi else [f"Deployment/{d['metadata']['name']}" for d in by_kind(objs, "Deployment")
                                         if d["metadata"]["labels"].get("app.kubernetes.io/component") == "server"]
    assert selected(pool["spec"]["selector"]["matchLabels"], objs) == expected
    assert pool["spec"]["targetPorts"] == [{"number": 8000}]
    ref = pool["spec"]["endpointPickerRef"]
    epp_service = [s for s in by_kind(objs, "Service") if s["metadata"]["name"] == ref["name"]]
    assert epp_service and ref["port"] == {"number": 9002} and ref["failureMode"] == "FailClose"
    # The picker's Service selects the picker, not the servers; the servers' Service never the picker.
    assert selected(epp_service[0]["spec"]["selector"], objs) == [f"Deployment/{ref['name']}"]
    server_service = [s for s in by_kind(objs, "Service") if s["metadata"]["name"] != ref["name"]][0]
    assert f"Deployment/{ref['name']}" not in selected(server_service["spec"]["selector"], objs)


@pytest.mark.parametrize("name", EXAMPLES)
def test_serving_pods_carry_the_llm_d_labels(name):
    objs = render(CHART, values(name))
    for who, labels in pod_templates(objs):
        serving = who == "leader" or labels.get("app.kubernetes.io/component") == "server"
        assert (labels.get("llm-d.ai/inference-serving") == "true") == serving, who
        if serving:
            # The fallback runtime exports vLLM's metric names: its pods are scored as vLLM's.
            assert labels["llm-d.ai/engine-type"] == "vllm"
            assert labels["llm-d.ai/model"] == plan(name)["model"]["name"]
            assert labels["llm-d.ai/role"] == "both"


def test_endpoint_picker_flags_rbac_config_and_ports():
    objs = render(CHART, values("cpu-smollm2"), release="r1", namespace="serving")
    epp = [d for d in by_kind(objs, "Deployment") if d["metadata"]["name"].endswith("-epp")][0]
    pod = epp["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    args = c["args"]
    pool_name = one(objs, "InferencePool")["metadata"]["name"]
    for flag, want in [("--pool-name", pool_name), ("--pool-namespace", "serving"),
                       ("--pool-group", "inference.networking.k8s.io"), ("--config-file", "/config/config.yaml")]:
        assert args[args.index(flag) + 1] == want
    assert c["image"] == "ghcr.io/llm-d/llm-d-router-endpoint-picker:v0.10.0"
    assert {p["containerPort"] for p in c["ports"]} == {9002, 9003, 9090}
    sec = c["securityContext"]
    assert sec["allowPrivilegeEscalation"] is False and sec["capabilities"]["drop"] == ["ALL"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    service = [s for s in by_kind(objs, "Service") if s["metadata"]["name"] == epp["metadata"]["name"]][0]
    assert {p["port"] for p in service["spec"]["ports"]} == {9002, 9003, 9090}
    role = [r for r in by_kind(objs, "Role") if r["metadata"]["name"] == epp["metadata"]["name"]][0]
    granted = {(g, res) for rule in role["rules"] for g in rule["apiGroups"] for res in rule["resources"]}
    assert {("", "pods"), ("inference.networking.k8s.io", "inferencepools")} <= granted
    for group in ("llm-d.ai", "inference.networking.x-k8s.io"):
        assert {(group, "inferenceobjectives"), (group, "inferencemodelrewrites")} <= granted
    assert all(set(rule["verbs"]) == {"get", "watch", "list"} for rule in role["rules"])
    binding = one(objs, "RoleBinding")
    assert binding["subjects"][0]["name"] == pod["serviceAccountName"]
    cm = [m for m in by_kind(objs, "ConfigMap") if m["metadata"]["name"] == epp["metadata"]["name"]][0]
    config = yaml.safe_load(cm["data"]["config.yaml"])
    assert (config["apiVersion"], config["kind"]) == ("llm-d.ai/v1alpha1", "EndpointPickerConfig")
    types = [p["type"] for p in config["plugins"]]
    assert types == ["queue-scorer", "kv-cache-utilization-scorer", "prefix-cache-scorer"]
    refs = {p["pluginRef"] for p in config["schedulingProfiles"][0]["plugins"]}
    assert refs == set(types)


def test_lora_affinity_scorer_joins_when_asked():
    objs = render(CHART, values("cpu-smollm2", loraAffinity=True))
    cm = [m for m in by_kind(objs, "ConfigMap") if m["metadata"]["name"].endswith("-epp")][0]
    config = yaml.safe_load(cm["data"]["config.yaml"])
    assert "lora-affinity-scorer" in [p["type"] for p in config["plugins"]]
    assert "lora-affinity-scorer" in [p["pluginRef"] for p in config["schedulingProfiles"][0]["plugins"]]


def test_off_by_default_and_route_only_with_a_gateway():
    v = values_from_plan(plan("cpu-smollm2"))
    kinds = {o["kind"] for o in render(CHART, v)}
    assert not kinds & (ROUTER_KINDS | {"Role", "RoleBinding"})
    v["router"] = {"enabled": True}
    objs = render(CHART, v)
    assert one(objs, "InferencePool") and not by_kind(objs, "HTTPRoute") and not by_kind(objs, "InferenceObjective")


def test_route_to_the_pool_with_a_generation_timeout():
    route = one(render(CHART, values("cpu-smollm2")), "HTTPRoute")
    (parent,) = route["spec"]["parentRefs"]
    assert (parent["name"], parent["namespace"]) == ("inference-gateway", "gateways")
    (rule,) = route["spec"]["rules"]
    assert rule["backendRefs"] == [{"group": "inference.networking.k8s.io", "kind": "InferencePool",
                                   "name": route["metadata"]["name"]}]
    assert rule["timeouts"]["request"] == "600s"


def test_cel_rules_refuse_what_an_api_server_refuses():
    """The validator can fail: the pool's own CEL rules, on objects an API server would refuse."""
    pool = one(render(CHART, values("cpu-smollm2")), "InferencePool")
    twice = copy.deepcopy(pool)
    twice["spec"]["targetPorts"] = [{"number": 8000}, {"number": 8000}]
    with pytest.raises(AssertionError, match="port number must be unique"):
        validate(twice)
    no_port = copy.deepcopy(pool)
    del no_port["spec"]["endpointPickerRef"]["port"]
    del no_port["spec"]["endpointPickerRef"]["kind"]  # defaulted to Service, as the API server does
    with pytest.raises(AssertionError, match="port is required"):
        validate(no_port)
    unknown = copy.deepcopy(pool)
    unknown["spec"]["endpointPickerRef"]["timeout"] = "1s"
    with pytest.raises(AssertionError, match="timeout"):
        validate(unknown)


@pytest.mark.parametrize("bad, field", [
    ({"endpointPicker": {"securityContext": {"privileged": True}}}, "router.endpointPicker.securityContext"),
    ({"pool": {"failureMode": "Sometimes"}}, "router.pool.failureMode"),
    ({"httpRoute": {"requestTimeout": "ten minutes"}}, "router.httpRoute.requestTimeout"),
])
def test_schema_refuses_bad_router_values(bad, field):
    v = values_from_plan(plan("cpu-smollm2"))
    v["router"] = {"enabled": True, **bad}
    with pytest.raises(UserError) as exc:
        validate_values(CHART, v)
    assert exc.value.field.startswith(field)


def test_checkov_passes_the_router_objects(tmp_path):
    """checkov's Kubernetes checks, as test_chart_security runs them, over every example with the router on."""
    from test_chart_security import DIGEST, checkov, _write_rendered

    for name in EXAMPLES:
        v = values(name, endpointPicker={"image": {"repository": "ghcr.io/llm-d/llm-d-router-endpoint-picker",
                                                   "digest": "sha256:" + "e" * 64}})
        v["image"]["digest"] = DIGEST
        v["auth"] = {"existingSecret": "k"}
        _write_rendered(tmp_path, name, render(CHART, v))
    report = checkov(tmp_path)
    failed = [(f["check_id"], f["resource"]) for f in report["results"]["failed_checks"]]
    assert not failed, failed
    checked = {f["resource"] for f in report["results"]["passed_checks"]}
    assert any("-epp" in r and r.startswith("Deployment.") for r in checked)
