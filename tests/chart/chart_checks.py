"""Checks the chart tests share: real schemas (Kubernetes 1.32 and the CRDs in shared/crds), real Helm."""
from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import crd_checks
import helm_python as helm
import kubernetes_validate
import yaml
from crd_checks import CRD_FILES

KUBE_VERSION = "1.32.0"
REPO = Path(__file__).resolve().parents[2]

def shared_dir() -> Path:
    """$PACKAGER_SHARED_DIR, else the first shared/ with crds/ found walking up from here."""
    override = os.environ.get("PACKAGER_SHARED_DIR")
    if override:
        return Path(override)
    for d in Path(__file__).resolve().parents:
        if (d / "shared" / "crds").is_dir():
            return d / "shared"
    raise FileNotFoundError("no shared/crds beside the repo; set PACKAGER_SHARED_DIR")


# The four plans the chart must serve, made by the real planner (never stale):
# name -> (model manifest, hardware, profile to select or None for the planner's choice).
PLANS = {
    "cpu-smollm2": ("smollm2-135m-instruct", "cpu", None),
    "nvidia-llama8b-tp2": ("llama-3.1-8b-instruct", "nvidia-h100-sxm-80gb-x8", "vllm-bf16-tp2-pp1-latency"),
    "nvidia-llama70b-2x8": ("llama-3.1-70b-instruct", "nvidia-h100-sxm-80gb-2x8-gke", "vllm-bf16-tp8-pp2-throughput"),
    "amd-mi300x-llama8b": ("llama-3.1-8b-instruct", "amd-mi300x-x8", "vllm-bf16-tp1-pp1-throughput"),
    "nvidia-llama8b-l4": ("llama-3.1-8b-instruct", "nvidia-l4-x1", None),
}


MODEL_DIR = "/opt/packager/model"


@lru_cache(maxsize=None)
def _plan_json(name: str) -> str:
    from packager.manifests import load_hardware
    from packager.planner import plan_files, replan

    model, hardware, pinned = PLANS[name]
    hw_arg = str(REPO / "manifests" / "hardware" / f"{hardware}.yaml")
    hw_arg = hw_arg if Path(hw_arg).exists() else hardware
    # As `packager build` plans: the engine reads the weights from the image's model dir.
    result = plan_files(str(REPO / "manifests" / "models" / f"{model}.yaml"), hw_arg, model_ref=MODEL_DIR)
    if pinned:
        result = replan(result.to_dict(), load_hardware(hw_arg), pinned=pinned)
    return json.dumps(result.to_dict())


def plan(name: str) -> dict[str, Any]:
    return json.loads(_plan_json(name))


def plan_file(name: str, directory: Path) -> Path:
    """The plan written as plan.json, for commands that take `--plan`."""
    path = Path(directory) / f"{name}.plan.json"
    path.write_text(_plan_json(name))
    return path


def validate(obj: dict[str, Any]) -> crd_checks.Checked | None:
    """Core kinds: kubernetes-validate strict for 1.32; CRD kinds: the CRD's openAPIV3Schema, strict, and its
    CEL rules (crd_checks); returns what the CEL check evaluated and what it could not."""
    if obj["kind"] in CRD_FILES:
        return crd_checks.check(obj, shared_dir() / "crds")
    try:
        kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        path = ".".join(str(p) for p in exc.path)
        raise AssertionError(f"{obj['kind']} {obj['metadata']['name']}: {path}: {exc.message}") from None
    return None


def render(chart_dir: Path, values: dict[str, Any] | None = None, *, release: str = "rel",
           namespace: str = "ai") -> list[dict[str, Any]]:
    """Every object the chart renders (tests included), parsed."""
    with helm.Chart.load(str(chart_dir)) as chart:
        rendered = chart.render(values, name=release, namespace=namespace, is_install=True)
    objs = []
    for path, text in sorted(rendered.items()):
        if path.endswith(".txt"):
            continue
        objs += [o for o in yaml.safe_load_all(text) if o]
    return objs


def by_kind(objs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] == kind]


def one(objs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = by_kind(objs, kind)
    assert len(found) == 1, f"expected one {kind}, got {[o['metadata']['name'] for o in found]}"
    return found[0]


def server_deployments(objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The model server's Deployments (the endpoint picker's, under router.enabled, is not one)."""
    return [d for d in by_kind(objs, "Deployment")
            if d["metadata"]["labels"].get("app.kubernetes.io/component") != "endpoint-picker"]


def pod_specs(objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The serving pod specs: the Deployment's, or the LeaderWorkerSet leader's and worker's."""
    specs = [d["spec"]["template"]["spec"] for d in server_deployments(objs)]
    for lws in by_kind(objs, "LeaderWorkerSet"):
        t = lws["spec"]["leaderWorkerTemplate"]
        specs += [t["leaderTemplate"]["spec"], t["workerTemplate"]["spec"]]
    return specs


# Every optional object on, so each one is rendered and validated.
ALL_FEATURES = {
    "serviceMonitor": {"enabled": True},
    "autoscaling": {"keda": {"enabled": True}},
    "ingress": {"enabled": True, "className": "nginx", "host": "llm.example.com",
                "tls": [{"secretName": "llm-tls", "hosts": ["llm.example.com"]}]},
    "auth": {"existingSecret": "llm-key"},  # an Ingress renders only with a key (test_chart_ingress)
    "podDisruptionBudget": {"enabled": True},
    "networkPolicy": {"enabled": True, "from": [{"namespaceSelector": {"matchLabels": {"team": "ml"}}}]},
    "weights": {"mode": "volume"},
}
