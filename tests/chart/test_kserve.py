"""`packager kserve`: the objects it writes for the issue's three examples, checked as an API server would (the
KServe CRDs in shared/crds with their CEL rules; every pod spec inside against Kubernetes 1.32), and what it
refuses (exit 2, a named field, nothing written)."""
from __future__ import annotations

import json

import pytest
import yaml
from chart_checks import plan, plan_file, validate

EXAMPLES = {  # name -> the kind packager picks by default
    "nvidia-llama8b-l4": "LLMInferenceService",
    "cpu-smollm2": "InferenceService",
    "nvidia-llama70b-2x8": "LLMInferenceService",
}


def kserve(run_cli, tmp_path, name, *args):
    code, out, err = run_cli("kserve", "--plan", str(plan_file(name, tmp_path)), *args)
    assert code == 0, err
    return [o for o in yaml.safe_load_all(out) if o]


def pods(obj: dict) -> list[tuple[str, dict]]:
    """Every pod spec an object carries, wrapped as a Pod for the Kubernetes 1.32 schema."""
    spec = obj.get("spec") or {}
    found = []
    if obj["kind"] == "LLMInferenceService":
        found = [("template", spec["template"])] + ([("worker", spec["worker"])] if "worker" in spec else [])
    elif obj["kind"] == "ServingRuntime":
        found = [("runtime", {"containers": spec["containers"], "volumes": spec["volumes"]})]
    elif obj["kind"] == "InferenceService":
        p = {k: v for k, v in spec["predictor"].items() if k not in ("model", "minReplicas", "maxReplicas")}
        found = [("predictor", {**p, "containers": [{"name": "kserve-container", "image": "x",
                                                     **{k: v for k, v in spec["predictor"]["model"].items()
                                                        if k == "resources"}}]})]
    return [(w, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"{obj['metadata']['name']}-{w}"},
                 "spec": s}) for w, s in found]


@pytest.mark.parametrize("name", sorted(EXAMPLES))
@pytest.mark.parametrize("args", [(), ("--weights", "baked")], ids=["volume", "baked"])
def test_objects_are_valid_for_every_example(run_cli, tmp_path, name, args):
    if name == "cpu-smollm2" and not args:
        args = ("--pvc", "models/smollm2")  # its weights are a package file, not on the Hub
    objs = kserve(run_cli, tmp_path, name, *args)
    kinds = [o["kind"] for o in objs]
    assert kinds[-1] == EXAMPLES[name]
    assert kinds[0] == "ConfigMap"  # the plan every pod mounts, as the chart's do
    if EXAMPLES[name] == "InferenceService":
        assert kinds == ["ConfigMap", "ServingRuntime", "InferenceService"]
    unevaluated = []
    for obj in objs:
        checked = validate(obj)
        unevaluated += checked.unevaluated if checked else []
        for _, pod in pods(obj):
            validate(pod)
    assert unevaluated == []


def test_inference_service_runs_the_runtime_in_standard_mode(run_cli, tmp_path):
    cm, sr, isvc = kserve(run_cli, tmp_path, "nvidia-llama8b-l4", "--kind", "inferenceservice")
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Standard"
    model = isvc["spec"]["predictor"]["model"]
    assert model["runtime"] == sr["metadata"]["name"]
    assert model["modelFormat"]["name"] in [f["name"] for f in sr["spec"]["supportedModelFormats"]]
    source = plan("nvidia-llama8b-l4")["model"]["source"]
    assert model["storageUri"] == f"hf://{source['repo']}:{source['revision']}"
    assert model["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert isvc["spec"]["predictor"]["nodeSelector"]  # the L4 node pool from the hardware manifest
    (c,) = sr["spec"]["containers"]
    assert c["command"][-2:] == ["-m", "runtimes.launcher"]  # starts through the launcher, as the chart's pods
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["PACKAGER_WEIGHTS_MODE"] == "volume" and env["PACKAGER_MODEL_DIR"] == "/mnt/models"
    assert env["PACKAGER_PLAN"] == "/etc/packager/plan.json"
    assert json.loads(cm["data"]["plan.json"])["selected"]["name"] == cm["data"]["profile"]
    plan_volume = next(v for v in sr["spec"]["volumes"] if v["name"] == "plan")
    assert plan_volume["configMap"]["name"] == cm["metadata"]["name"]
    assert env["PACKAGER_PORT"] == str(c["ports"][0]["containerPort"]) == "8080"
    assert c["readinessProbe"]["httpGet"] == {"path": "/v1/health/ready", "port": 8080}
    assert c["securityContext"]["capabilities"]["drop"] == ["ALL"] and c["securityContext"]["runAsNonRoot"]


def test_llm_inference_service_for_the_70b_on_two_nodes(run_cli, tmp_path):
    _, llm = kserve(run_cli, tmp_path, "nvidia-llama70b-2x8", "--gateway", "gateways/inference-gateway",
                    "--api-key-secret", "llm-api-key")
    spec, selected = llm["spec"], plan("nvidia-llama70b-2x8")["selected"]
    assert spec["parallelism"] == {"tensor": 8, "pipeline": 2}
    assert spec["model"]["name"] == "meta-llama/Llama-3.1-70B-Instruct"
    (main,) = spec["template"]["containers"]
    argv = list(selected["engine_argv"])
    argv[argv.index("--port") + 1] = "8000"
    argv[2] = "/mnt/models"
    assert main["args"] == argv  # the planned argv; rehearse checks the launcher starts exactly this
    assert main["resources"]["limits"]["nvidia.com/gpu"] == 8
    (worker,) = spec["worker"]["containers"]
    assert "args" not in worker and "ports" not in worker and worker["resources"]["limits"]["nvidia.com/gpu"] == 8
    assert spec["router"] == {"route": {}, "scheduler": {},
                              "gateway": {"refs": [{"name": "inference-gateway", "namespace": "gateways"}]}}
    # The key from the Secret, as the chart's auth.existingSecret gives it (the chart's default data key).
    ref = {"secretKeyRef": {"name": "llm-api-key", "key": "api-key"}}
    assert [e for e in main["env"] if "valueFrom" in e] == [{"name": "PACKAGER_API_KEY", "valueFrom": ref},
                                                            {"name": "VLLM_API_KEY", "valueFrom": ref}]


def test_a_route_with_no_key_is_open_only_on_purpose(run_cli, tmp_path):
    """As the chart's packager.requireKey: --router/--gateway without a key exit 2 (the refusals below);
    --allow-unauthenticated says it is meant, and then no key variable is set; a key works without a route."""
    _, llm = kserve(run_cli, tmp_path, "nvidia-llama8b-l4", "--router", "--allow-unauthenticated")
    assert llm["spec"]["router"]["route"] == {}
    assert not [e for e in llm["spec"]["template"]["containers"][0]["env"] if "API_KEY" in e["name"]]
    _, sr, _ = kserve(run_cli, tmp_path, "cpu-smollm2", "--weights", "baked", "--api-key-secret", "k:token")
    env = {e["name"]: e.get("valueFrom") for e in sr["spec"]["containers"][0]["env"]}
    assert env["PACKAGER_API_KEY"] == {"secretKeyRef": {"name": "k", "key": "token"}}


def test_baked_weights_skip_the_storage_initializer(run_cli, tmp_path):
    _, llm = kserve(run_cli, tmp_path, "nvidia-llama8b-l4", "--weights", "baked")
    assert llm["spec"]["storageInitializer"] == {"enabled": False}
    env = {e["name"]: e.get("value") for e in llm["spec"]["template"]["containers"][0]["env"]}
    assert env["PACKAGER_WEIGHTS_MODE"] == "baked" and "PACKAGER_MODEL_DIR" not in env
    _, _, isvc = kserve(run_cli, tmp_path, "cpu-smollm2", "--weights", "baked")
    assert "storageUri" not in isvc["spec"]["predictor"]["model"]


def test_out_writes_the_file(run_cli, tmp_path):
    out = tmp_path / "k" / "smollm2.yaml"
    code, stdout, err = run_cli("kserve", "--plan", str(plan_file("cpu-smollm2", tmp_path)), "--weights", "baked",
                                "--out", str(out))
    assert code == 0, err
    assert stdout.strip() == str(out)
    assert [o["kind"] for o in yaml.safe_load_all(out.read_text())] == ["ConfigMap", "ServingRuntime", "InferenceService"]


@pytest.mark.parametrize("name, args, field, words", [
    ("cpu-smollm2", ("--weights", "oci"), "--weights", "modelcar"),
    ("cpu-smollm2", ("--weights", "volume"), "--weights", "--pvc"),
    ("cpu-smollm2", ("--weights", "tarball"), "--weights", "baked, volume, oci"),
    ("cpu-smollm2", ("--kind", "llminferenceservice", "--weights", "baked"), "--kind", "vLLM"),
    ("nvidia-llama70b-2x8", ("--kind", "inferenceservice"), "--kind", "2 nodes"),
    ("cpu-smollm2", ("--router", "--weights", "baked"), "--router", "LLMInferenceService"),
    ("nvidia-llama70b-2x8", ("--router",), "--api-key-secret", "no key"),
    ("nvidia-llama8b-l4", ("--gateway", "inference-gateway"), "--api-key-secret", "allow-unauthenticated"),
    ("nvidia-llama8b-l4", ("--router", "--api-key-secret", "Bad_Name"), "--api-key-secret", "NAME[:KEY]"),
])
def test_refusals_name_the_field_and_write_nothing(run_cli, tmp_path, name, args, field, words):
    out = tmp_path / "out.yaml"
    code, stdout, err = run_cli("kserve", "--plan", str(plan_file(name, tmp_path)), *args, "--out", str(out))
    assert code == 2, (stdout, err)
    assert field in err and words in err and "Traceback" not in err
    assert not out.exists() and not list(tmp_path.glob("out.yaml*"))
