"""What rehearse needs from the platform objects: the pods KServe would make from an InferenceService (its
ServingRuntime's container merged with the predictor's model spec, the storage initializer's /mnt/models) or
an LLMInferenceService (template and worker, a LeaderWorkerSet under KServe), and the endpoint picker, which
is read, never run: its pool, its Service and its EndpointPickerConfig are checked against the rendered
objects."""
from __future__ import annotations

import copy
import json

import yaml

from packager.rehearse.checks import Check
from packager.rehearse.containers import Container

KSERVE_MODEL_DIR = "/mnt/models"
_MODEL_FIELDS = ("args", "command", "env", "resources", "image", "ports", "volumeMounts")


STORAGE = "packager.dev/storage-uri"  # on a stand-in workload: what KServe's storage initializer fetches


def _storage_uri(doc: dict) -> str | None:
    if doc["kind"] == "InferenceService":
        return ((doc["spec"]["predictor"].get("model") or {}).get("storageUri")) or None
    if doc["kind"] == "LLMInferenceService":
        if (doc["spec"].get("storageInitializer") or {}).get("enabled") is False:
            return None
        return (doc["spec"].get("model") or {}).get("uri") or None
    return None


def storage_uris(docs: list[dict]) -> dict[str, str]:
    """Stand-in workload name -> the URI KServe's storage initializer fills /mnt/models from."""
    return {d["metadata"]["name"]: d["metadata"]["annotations"][STORAGE] for d in docs
            if (d["metadata"].get("annotations") or {}).get(STORAGE)}


def provisioned(uri: str, rec: dict, checks: list[Check | None]) -> list[Check | None]:
    """KServe fetches the weights before the container starts: the launcher's 'no weights at /mnt/models'
    is what a rehearsal sees, not what the pod will; every other problem stands."""
    own = [p for p in rec.get("problems") or [] if not (p.startswith("weights:") and KSERVE_MODEL_DIR in p)]
    fixed: list[Check | None] = []
    for c in checks:
        if c is not None and c.name == "weights":
            c = Check("weights", True, f"KServe's storage initializer fetches {uri} into {KSERVE_MODEL_DIR} "
                      "before the container starts")
        elif c is not None and c.name == "starts" and c.ok is False and not own:
            c = Check("starts", True, f"the launcher would exec {(rec.get('argv') or ['?'])[0]} once {uri} is in "
                      f"{KSERVE_MODEL_DIR} (profile {rec.get('profile')})")
        fixed.append(c)
    return fixed


def _isvc_pod(doc: dict, runtimes: dict[str, dict]) -> dict | None:
    """The pod KServe makes for a predictor: the runtime's container, overlaid with the model's fields."""
    predictor = doc["spec"]["predictor"]
    model = predictor.get("model") or {}
    runtime = runtimes.get(model.get("runtime", ""))
    if runtime is None:
        return None
    (container, *_) = copy.deepcopy(runtime["spec"]["containers"])
    for key in _MODEL_FIELDS:
        if key == "env" and model.get("env"):
            names = {e["name"] for e in model["env"]}
            container["env"] = [e for e in container.get("env", []) if e["name"] not in names] + model["env"]
        elif key != "env" and key in model:
            container[key] = model[key]
    volumes = list(runtime["spec"].get("volumes") or [])
    if model.get("storageUri"):  # the storage initializer fills an emptyDir (or mounts the claim) there
        volumes.append({"name": "kserve-provision-location", "emptyDir": {}})
        container.setdefault("volumeMounts", []).append(
            {"name": "kserve-provision-location", "mountPath": KSERVE_MODEL_DIR, "readOnly": True})
    pod = {k: v for k, v in predictor.items() if k not in ("model", "minReplicas", "maxReplicas")}
    return {**pod, "containers": [container], "volumes": volumes}


def _llmisvc_pod(spec: dict) -> dict:
    pod = copy.deepcopy(spec)
    if pod.get("containers"):
        c = pod["containers"][0]
        c.setdefault("volumeMounts", []).append({"name": "model", "mountPath": KSERVE_MODEL_DIR, "readOnly": True})
        pod.setdefault("volumes", []).append({"name": "model", "emptyDir": {}})
    return pod


def workloads(docs: list[dict]) -> list[dict]:
    """KServe objects as the workloads rehearse knows (a Deployment per InferenceService, a LeaderWorkerSet or
    a Deployment per LLMInferenceService), named after the KServe object; other objects unchanged."""
    runtimes = {d["metadata"]["name"]: d for d in docs if d["kind"] in ("ServingRuntime", "ClusterServingRuntime")}
    out = []
    for d in docs:
        meta = {"name": d["metadata"]["name"], "labels": d["metadata"].get("labels") or {},
                "annotations": {"packager.dev/platform-kind": d["kind"], STORAGE: _storage_uri(d) or ""}}
        if d["kind"] == "InferenceService":
            pod = _isvc_pod(d, runtimes)
            if pod is not None:
                out.append({"kind": "Deployment", "metadata": meta, "spec": {"template": {"spec": pod}}})
        elif d["kind"] == "LLMInferenceService":
            spec = d["spec"]
            if spec.get("worker"):
                size = int((spec.get("parallelism") or {}).get("pipeline") or 2)
                out.append({"kind": "LeaderWorkerSet", "metadata": meta, "spec": {"leaderWorkerTemplate": {
                    "size": size, "leaderTemplate": {"spec": _llmisvc_pod(spec["template"])},
                    "workerTemplate": {"spec": _llmisvc_pod(spec["worker"])}}}})
            else:
                out.append({"kind": "Deployment", "metadata": meta,
                            "spec": {"template": {"spec": _llmisvc_pod(spec["template"])}}})
        elif d["kind"] not in ("ServingRuntime", "ClusterServingRuntime"):
            out.append(d)
    return out


def planned_argv(c: Container, rec: dict) -> Check | None:
    """A template's args name the planned argv (packager kserve writes them); the launcher, which re-plans
    in the pod, must start the same engine command (model path, host and port aside: the pod's own)."""
    if not c.args or rec.get("ok") is None or not rec.get("argv"):
        return None

    def flags(argv: list[str]) -> list[str]:
        out, skip = [], False
        for i, a in enumerate(argv):
            if skip:
                skip = False
                continue
            if a in ("--host", "--port", "--model"):
                skip = True
                continue
            if i >= 1 and not a.startswith("-") and (i == 0 or not argv[i - 1].startswith("-")):
                continue  # positionals: the program, `serve`, the model path
            out.append(a)
        return out

    want, got = flags(list(c.args)), flags(list(rec["argv"]))
    if want == got:
        return Check("planned-argv", True, "the launcher starts the argv the template's args name")
    diff = sorted(set(want) ^ set(got))[:6]
    return Check("planned-argv", False, f"the template's args and the launcher's argv differ: {' '.join(diff)}")


def is_endpoint_picker(c: Container) -> bool:
    return "--pool-name" in (c.args or ())


def _arg(args: tuple[str, ...], flag: str) -> str | None:
    return args[args.index(flag) + 1] if flag in args and args.index(flag) + 1 < len(args) else None


def endpoint_picker(c: Container, docs: list[dict]) -> list[Check]:
    """The picker, read: its pool exists and points back at a Service that selects it, and its config file is
    on a mounted ConfigMap and names only plugins it declares."""
    args = c.args or ()
    out = [Check("image", None, f"{c.image}: the endpoint picker is read, not run: its image is neither pulled "
                 "nor looked up")]
    pool_name = _arg(args, "--pool-name")
    pools = {d["metadata"]["name"]: d for d in docs if d["kind"] == "InferencePool"}
    pool = pools.get(pool_name or "")
    if pool is None:
        out.append(Check("pool", False, f"--pool-name {pool_name} names no InferencePool the chart renders "
                         f"({', '.join(pools) or 'none'})"))
    else:
        ref = pool["spec"].get("endpointPickerRef") or {}
        services = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}
        svc = services.get(ref.get("name", ""))
        port = (ref.get("port") or {}).get("number")
        ok = svc is not None and port in [p.get("port") for p in svc["spec"].get("ports") or []]
        out.append(Check("pool", ok, f"InferencePool {pool_name} -> Service {ref.get('name')}:{port}"
                         + ("" if ok else " (no such Service port)")))
    path = _arg(args, "--config-file") or ""
    mount = next((m for m in c.mounts if path.startswith(m.path.rstrip("/") + "/")), None)
    files = dict(mount.files) if mount else {}
    body = files.get(path[len(mount.path.rstrip("/")) + 1:]) if mount else None
    if body is None:
        out.append(Check("config", False, f"--config-file {path} is on no mounted ConfigMap"))
        return out
    try:
        config = yaml.safe_load(body) or {}
        declared = {p.get("name") or p["type"] for p in config.get("plugins") or []}
        used = {r["pluginRef"] for prof in config.get("schedulingProfiles") or [] for r in prof.get("plugins") or []}
    except (yaml.YAMLError, KeyError, TypeError, AttributeError) as exc:
        out.append(Check("config", False, f"{path} is not an EndpointPickerConfig: {exc}"))
        return out
    if config.get("kind") != "EndpointPickerConfig" or used - declared:
        out.append(Check("config", False, f"{path}: kind {config.get('kind')!r}; undeclared plugins "
                         f"{json.dumps(sorted(used - declared))}"))
    else:
        out.append(Check("config", True, f"{path}: EndpointPickerConfig, scorers {', '.join(sorted(used))}"))
    return out


def read_record(c: Container) -> dict:
    """The picker's record: what the kubelet would exec (the image's entrypoint with these args)."""
    return {"schema": 1, "role": c.role, "profile": None, "runtime": None, "prelude": [],
            "argv": ["(image entrypoint)", *(c.args or ())], "env": {}, "pythonpath": [], "middleware": [],
            "checks": {}, "model_path": None, "weights": None, "ok": None, "problems": [], "launcher": False}
