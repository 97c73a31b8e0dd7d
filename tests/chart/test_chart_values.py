"""Values follow the plan; the schema and the override rules reject bad input by name."""
from __future__ import annotations

import json

import copy

import helm_python as helm
import pytest
import yaml

from chart_checks import REPO, one, plan, pod_specs, render
from packager.chart import chart_values, values_from_plan, write_chart
from packager.chart.overrides import parse_set
from packager.chart.sizing import startup_budget_s
from packager.errors import UserError


def _with_tp(p, tp):
    p = copy.deepcopy(p)
    s = p["selected"]
    s.update(tensor_parallel_size=tp, devices=tp, devices_per_node=tp)
    s["name"] = s["name"].replace("tp2", f"tp{tp}")
    return p


def test_schema_rejects_wrong_type_and_unknown_key():
    with helm.Chart.load(str(REPO / "packager" / "chart" / "helm")) as chart:
        chart.validate_schema({})  # the defaults pass
        with pytest.raises(helm.HelmValuesError, match="replicaCount"):
            chart.validate_schema({"replicaCount": "two"})
        with pytest.raises(helm.HelmValuesError, match="replicas"):
            chart.validate_schema({"replicas": 2})
        with pytest.raises(helm.HelmValuesError, match="tagg"):
            chart.validate_schema({"image": {"tagg": "v1"}})  # nested objects are closed too


def test_set_and_files_are_validated_by_key(tmp_path):
    p = plan("cpu-smollm2")
    with pytest.raises(UserError) as e:
        write_chart(p, tmp_path, sets=["replicaCount=two"])
    assert e.value.field == "replicaCount"
    with pytest.raises(UserError) as e:
        write_chart(p, tmp_path, sets=["replicas=2"])
    assert e.value.field == "replicas"
    with pytest.raises(UserError) as e:
        write_chart(p, tmp_path, sets=["autoscaling.keda.treshold=3"])
    assert e.value.field == "autoscaling.keda.treshold"
    bad = tmp_path / "bad.yaml"
    bad.write_text("replicaCount: 1\nimage: [unclosed\n")
    with pytest.raises(UserError) as e:
        write_chart(p, tmp_path, values_files=[bad])
    assert e.value.file == str(bad) and e.value.line
    assert not (tmp_path / "smollm2-135m-instruct").exists()  # nothing half-written


def test_set_types_values_as_yaml_and_files_merge(tmp_path):
    assert parse_set("a.b=3") == {"a": {"b": 3}}
    assert parse_set("a=true") == {"a": True}
    assert parse_set("a=[x, y]") == {"a": ["x", "y"]}
    assert parse_set("a='3'") == {"a": "3"}
    assert parse_set(r"nodeSelector.nvidia\.com/gpu\.product=X") == {"nodeSelector": {"nvidia.com/gpu.product": "X"}}
    with pytest.raises(UserError):
        parse_set("noequals")
    f1 = tmp_path / "a.yaml"
    f1.write_text("replicaCount: 3\nserviceMonitor: {enabled: true}\n")
    f2 = tmp_path / "b.yaml"
    f2.write_text("replicaCount: 4\n")
    v = chart_values(plan("cpu-smollm2"), values_files=[f1, f2], sets=["serviceMonitor.interval=30s"])
    assert v["replicaCount"] == 4  # later file wins
    assert v["serviceMonitor"] == {"enabled": True, "interval": "30s", "labels": {}}  # maps merge
    v = chart_values(plan("cpu-smollm2"), values_files=[f1], sets=["replicaCount=1"])
    assert v["replicaCount"] == 1  # --set wins over files


@pytest.mark.parametrize("tp", [1, 2, 4, 8])
def test_gpus_and_shm_follow_tp(tmp_path, tp):
    chart = write_chart(_with_tp(plan("nvidia-llama8b-tp2"), tp), tmp_path)
    (spec,) = pod_specs(render(chart))
    res = spec["containers"][0]["resources"]
    assert res["limits"]["nvidia.com/gpu"] == tp and res["requests"]["nvidia.com/gpu"] == tp
    shm = next(v for v in spec["volumes"] if v["name"] == "shm")["emptyDir"]
    assert shm["sizeLimit"] == f"{2 * tp}Gi"


def test_vendor_resource_keys():
    amd = values_from_plan(plan("amd-mi300x-llama8b"))
    assert amd["accelerator"] == {"resourceKey": "amd.com/gpu", "count": 1}
    cpu = values_from_plan(plan("cpu-smollm2"))
    assert cpu["accelerator"] == {"resourceKey": "", "count": 0}
    intel = copy.deepcopy(plan("cpu-smollm2"))
    intel["selected"]["vendor"] = "intel"
    assert values_from_plan(intel)["accelerator"] == {"resourceKey": "gpu.intel.com/i915", "count": 1}


def test_cpu_pod_asks_for_no_accelerator(tmp_path):
    (spec,) = pod_specs(render(write_chart(plan("cpu-smollm2"), tmp_path)))
    res = spec["containers"][0]["resources"]
    assert set(res["requests"]) == {"cpu", "memory"} and set(res["limits"]) == {"memory"}
    assert "nodeSelector" not in spec


def test_startup_budget_grows_with_weights():
    v8 = values_from_plan(plan("nvidia-llama8b-tp2"))
    v70 = values_from_plan(plan("nvidia-llama70b-2x8"))

    def budget(v):
        s = v["probes"]["startup"]
        return s["periodSeconds"] * s["failureThreshold"]

    assert budget(v70) > budget(v8) >= 15 * 60
    assert v70["model"]["weightsGiB"] == pytest.approx(131.4, abs=0.1)
    # KAITO: 15 min + 18 s per GiB of weights.
    assert startup_budget_s(10 * 1024**3) == 900 + 180
    assert budget(v70) >= startup_budget_s(70553706496 * 2)


def test_requests_fit_the_node_share():
    v = values_from_plan(plan("nvidia-llama8b-tp2"))  # 2 of 8 GPUs on a 192-core, 2 TiB node
    assert v["resources"]["requests"]["cpu"] == "36"
    mem = int(v["resources"]["requests"]["memory"].removesuffix("Gi"))
    assert 15 + 4 <= mem <= 0.9 * 2048 / 4  # weights + shm at least, its share of the node at most
    cpu = values_from_plan(plan("cpu-smollm2"))  # 2 cores, 24 GiB
    assert cpu["resources"]["requests"]["cpu"] == "1"
    assert int(cpu["resources"]["limits"]["memory"].removesuffix("Gi")) <= 0.9 * 24


def test_placement_by_cloud():
    assert values_from_plan(plan("nvidia-llama8b-tp2"))["nodeSelector"] == {
        "node.kubernetes.io/instance-type": "p5.48xlarge"}  # aws, 8 x H100 per node
    assert values_from_plan(plan("nvidia-llama70b-2x8"))["nodeSelector"] == {
        "cloud.google.com/gke-accelerator": "nvidia-h100-80gb"}
    amd = values_from_plan(plan("amd-mi300x-llama8b"))  # the example: Azure ND MI300X v5, selector from the manifest
    assert amd["nodeSelector"] == {"node.kubernetes.io/instance-type": "Standard_ND96isr_MI300X_v5"}
    assert {"key": "amd.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in amd["tolerations"]
    onprem = copy.deepcopy(plan("amd-mi300x-llama8b"))  # on-prem, no selector given: AMD node labeller
    pool = onprem["hardware"]["pools"][0]
    pool["cloud"], pool["kubernetes"]["node_selector"] = "onprem", {}
    pool["kubernetes"]["tolerations"] = [{"key": "dedicated", "operator": "Equal", "value": "inference", "effect": "NoSchedule"}]
    v = values_from_plan(onprem)
    assert v["nodeSelector"] == {"amd.com/gpu.device-id": "74a1"}
    assert {"key": "dedicated", "operator": "Equal", "value": "inference", "effect": "NoSchedule"} in v["tolerations"]
    assert {"key": "amd.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in v["tolerations"]
    azure = copy.deepcopy(plan("nvidia-llama8b-tp2"))
    azure["hardware"]["pools"][0]["cloud"] = "azure"
    azure["hardware"]["pools"][0]["kubernetes"]["node_selector"] = {}  # the manifest's own selector would win
    v = values_from_plan(azure)
    assert v["nodeSelector"] == {"node.kubernetes.io/instance-type": "Standard_ND96isr_H100_v5"}
    assert {"key": "sku", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"} in v["tolerations"]
    explicit = copy.deepcopy(plan("nvidia-llama8b-tp2"))
    explicit["hardware"]["pools"][0]["kubernetes"]["node_selector"] = {"pool": "h100"}
    assert values_from_plan(explicit)["nodeSelector"] == {"pool": "h100"}  # the manifest wins


def test_image_reference(tmp_path):
    digest = "sha256:" + "ab" * 32
    v = values_from_plan(plan("cpu-smollm2"), image=f"127.0.0.1:5000/team/smol:1.2@{digest}")
    assert v["image"] == {"repository": "127.0.0.1:5000/team/smol", "tag": "1.2", "digest": digest}
    assert values_from_plan(plan("cpu-smollm2"), image="127.0.0.1:5000/smol")["image"]["tag"] == "0.1.0"
    chart = write_chart(plan("cpu-smollm2"), tmp_path, image=f"reg.example.com/smol:1.2@{digest}")
    meta = yaml.safe_load((chart / "Chart.yaml").read_text())
    assert meta["name"] == "smollm2-135m-instruct" and meta["appVersion"] == "1.2"
    (spec,) = pod_specs(render(chart))
    assert spec["containers"][0]["image"] == f"reg.example.com/smol@{digest}"
    with pytest.raises(UserError):
        values_from_plan(plan("cpu-smollm2"), image="smol@sha256:nothex")


def test_plan_without_a_profile_is_a_user_error(tmp_path):
    p = plan("cpu-smollm2")
    p["selected"] = None
    p["advice"] = ["use a GPU with at least 16 GiB"]
    with pytest.raises(UserError, match="selected no profile") as e:
        write_chart(p, tmp_path)
    assert "16 GiB" in e.value.hint


def test_written_values_round_trip(tmp_path):
    chart = write_chart(plan("nvidia-llama70b-2x8"), tmp_path)
    with helm.Chart.load(str(chart)) as c:
        assert c.values["profile"]["nodes"] == 2
        assert c.values["plan"] == {}  # the plan is the chart's plan.json (issue 25), mounted by the ConfigMap
        assert json.loads((chart / "plan.json").read_text())["selected"]["name"] == "vllm-bf16-tp8-pp2-throughput"
        c.validate_schema(None)
    lws = one(render(chart), "LeaderWorkerSet")
    assert lws["metadata"]["labels"]["packager.dev/profile"] == "vllm-bf16-tp8-pp2-throughput"
