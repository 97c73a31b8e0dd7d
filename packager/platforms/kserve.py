"""KServe objects from a plan: a ServingRuntime and an InferenceService (serving.kserve.io, deploymentMode
Standard), or an LLMInferenceService (v1alpha2) for vLLM profiles. Every pod starts through the image's
launcher, as the chart's do; resources, placement, probes and security contexts are the chart's values
(`chart_values`), so a KServe deployment and the chart's ask for the same things."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from packager.chart.values import selected_profile
from packager.chart.writer import chart_values
from packager.errors import UserError
from packager.families import slug
from packager.image.context import LAUNCHER
from runtimes.api_keys import ENV_VARS as API_KEY_ENV
from runtimes.layout import (CACHE_DIR, ENV_MODEL_DIR, ENV_PLAN, ENV_PROFILE, ENV_WEIGHTS_MODE, PLAN_MOUNT_DIR,
                             PLAN_MOUNT_PATH, adapter_dir)

GROUP = "serving.kserve.io"
MODEL_FORMAT = "packager"  # ServingRuntime and InferenceService agree on it; the runtime is also named
# The port each kind's pods serve on: KServe's predictor port; an LLMInferenceService's pool and probes target 8000.
PORTS = {"inferenceservice": 8080, "llminferenceservice": 8000}
KSERVE_MODEL_DIR = "/mnt/models"  # where KServe's storage initializer (and a pvc:// mount) puts the weights
KINDS = ("inferenceservice", "llminferenceservice")
WEIGHTS = ("baked", "volume", "oci")


@dataclass(frozen=True)
class KServeRequest:
    """What `packager kserve` was asked for."""
    plan: dict
    weights: str = "volume"
    kind: str | None = None  # None: LLMInferenceService for vLLM profiles, else InferenceService
    image: str | None = None
    pvc: str | None = None  # CLAIM[/PATH] for pvc:// (weights not on the Hub)
    router: bool = False  # LLMInferenceService: KServe makes the HTTPRoute, InferencePool and scheduler
    gateway: str | None = None  # [NAMESPACE/]NAME of the Gateway the route attaches to
    api_key_secret: str | None = None  # NAME[:KEY] of a Secret holding the API key (the chart's auth.existingSecret)
    allow_unauthenticated: bool = False  # a route to the Gateway with no key, on purpose


_SECRET_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")  # a DNS-1123 subdomain
_SECRET_KEY = re.compile(r"[-._a-zA-Z0-9]{1,253}$")


def _api_key_ref(req: KServeRequest, default_key: str) -> dict | None:
    """The secretKeyRef the engines read their key from, or None (the API is open)."""
    if not req.api_key_secret:
        if (req.router or req.gateway) and not req.allow_unauthenticated:
            # One rule with the chart's packager.requireKey: a route from a Gateway takes the API beyond the cluster.
            raise UserError("--router/--gateway would serve the model's API through the Gateway with no key to anyone who "
                            "reaches it", field="--api-key-secret",
                            hint="pass --api-key-secret NAME[:KEY] (a Secret holding the key), or "
                                 "--allow-unauthenticated to expose it open on purpose")
        return None
    name, _, key = req.api_key_secret.partition(":")
    key = key or default_key
    if not _SECRET_NAME.match(name) or not _SECRET_KEY.match(key):
        raise UserError(f"--api-key-secret {req.api_key_secret!r} is not NAME[:KEY] (NAME a Kubernetes Secret's "
                        "name: lowercase letters, digits, '-' and '.'; KEY a data key)", field="--api-key-secret",
                        hint=f"for example --api-key-secret llm-api-key:{default_key}")
    return {"name": name, "key": key}


def objects(req: KServeRequest) -> list[dict[str, Any]]:
    """The objects to `kubectl apply`, in order (a runtime before the service that names it)."""
    profile = selected_profile(req.plan)
    if req.weights not in WEIGHTS:
        raise UserError(f"weights mode {req.weights!r} is not one of {', '.join(WEIGHTS)}", field="--weights")
    if req.weights == "oci":
        raise UserError(
            "KServe's oci:// storageUri runs the weights as a modelcar: an image with /models and a shell; "
            "`packager build --weights oci` makes a CNCF ModelPack artifact, which has neither, and packager has "
            "no `build --weights modelcar`", field="--weights",
            hint="use --weights volume (hf:// at the pinned revision, or pvc:// with --pvc) or --weights baked")
    kind = req.kind or ("llminferenceservice" if profile["runtime"] == "vllm" else "inferenceservice")
    if kind not in KINDS:
        raise UserError(f"kind {kind!r} is not one of {', '.join(KINDS)}", field="--kind")
    nodes = int(profile.get("nodes", 1))
    if kind == "llminferenceservice" and profile["runtime"] != "vllm":
        raise UserError(f"profile {profile['name']} runs {profile['runtime']}, and LLMInferenceService serves vLLM",
                        field="--kind", hint="use --kind inferenceservice")
    if kind == "inferenceservice" and nodes > 1:
        raise UserError(f"profile {profile['name']} spans {nodes} nodes; an InferenceService's workers start "
                        "KServe's own Ray scripts, not the launcher", field="--kind",
                        hint="use --kind llminferenceservice (a LeaderWorkerSet under KServe)")
    if (req.router or req.gateway) and kind != "llminferenceservice":
        raise UserError("--router and --gateway configure an LLMInferenceService", field="--router",
                        hint="use --kind llminferenceservice, or the chart's router.enabled for an InferencePool")
    values = chart_values(req.plan, image=req.image)
    ctx = _Ctx(req, profile, values, _name(req.plan), _storage_uri(req), PORTS[kind],
               _api_key_ref(req, values["auth"]["secretKey"]))
    lora = _lora(ctx)  # checked for both kinds: a local adapter needs the image's copy
    if kind == "inferenceservice":
        return [_plan_config_map(ctx), _serving_runtime(ctx), _inference_service(ctx)]
    return [_plan_config_map(ctx), _llm_inference_service(ctx)]


@dataclass(frozen=True)
class _Ctx:
    req: KServeRequest
    profile: dict
    values: dict
    name: str
    uri: str | None
    port: int
    api_key: dict | None = None  # the Secret's secretKeyRef, or None: the API is open


def _name(plan: dict) -> str:
    """A DNS-1035 label: KServe's objects and the Services it makes are named after it."""
    name = slug(plan["model"]["name"]).replace(".", "-").replace("_", "-")
    return name[:45].rstrip("-") if name[0].isalpha() else ("m-" + name)[:45].rstrip("-")


def _storage_uri(req: KServeRequest) -> str | None:
    """Where KServe's storage initializer fetches the weights from: the Hub at the plan's pinned revision
    (KServe's hf://REPO:REVISION form), or a claim; None when they are baked into the image."""
    if req.weights == "baked":
        return None
    source = req.plan["model"].get("source") or {}
    if req.pvc:
        return f"pvc://{req.pvc.strip('/')}"
    if source.get("kind") == "huggingface" and source.get("repo"):
        rev = source.get("revision")
        return f"hf://{source['repo']}" + (f":{rev}" if rev else "")
    raise UserError(f"the model's weights come from {source.get('kind', 'a local path')!r}, not the Hub, so KServe "
                    "cannot fetch them by itself", field="--weights",
                    hint="copy them into a claim and pass --pvc CLAIM[/PATH], or use --weights baked")


def _resources(values: dict) -> dict:
    """The chart's rule (packager.resources): CPU and memory from values, plus the accelerator per pod."""
    out = {k: dict(v) for k, v in (values.get("resources") or {}).items() if v}
    acc = values.get("accelerator") or {}
    if acc.get("resourceKey") and int(acc.get("count") or 0) > 0:
        for part in ("requests", "limits"):
            out.setdefault(part, {})[acc["resourceKey"]] = int(acc["count"])
    return out


def _probe(spec: dict, port: int) -> dict:
    return {"httpGet": {"path": spec["path"], "port": port}, "periodSeconds": spec["periodSeconds"],
            "timeoutSeconds": spec.get("timeoutSeconds", 5), "failureThreshold": spec["failureThreshold"]}


def _env(ctx: _Ctx) -> list[dict]:
    """The chart's server environment, with KServe's port and model dir."""
    env = [{"name": ENV_PROFILE, "value": ctx.profile["name"]}, {"name": ENV_PLAN, "value": PLAN_MOUNT_PATH},
           {"name": ENV_WEIGHTS_MODE, "value": "baked" if ctx.uri is None else "volume"},
           {"name": "PACKAGER_PORT", "value": str(ctx.port)}]
    if ctx.uri is not None:
        env.append({"name": ENV_MODEL_DIR, "value": KSERVE_MODEL_DIR})
    # The root filesystem is read-only: every cache goes to the writable volume.
    env += [{"name": "HOME", "value": CACHE_DIR}, {"name": "XDG_CACHE_HOME", "value": CACHE_DIR},
            {"name": "HF_HOME", "value": f"{CACHE_DIR}/huggingface"}, {"name": "HF_HUB_OFFLINE", "value": "1"},
            {"name": "TRITON_CACHE_DIR", "value": f"{CACHE_DIR}/triton"},
            {"name": "VLLM_CACHE_ROOT", "value": f"{CACHE_DIR}/vllm"}, {"name": "RAY_TMPDIR", "value": "/tmp/ray"}]
    if ctx.api_key is not None:  # as the chart's packager.authEnv: from the Secret, never on a command line
        env += [{"name": var, "valueFrom": {"secretKeyRef": dict(ctx.api_key)}} for var in API_KEY_ENV]
    return env


def _plan_config_map(ctx: _Ctx) -> dict:
    """The plan every pod reads, as the chart mounts it: a plan edit needs no rebuild, and `packager rehearse`
    replays these objects from the file alone."""
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"{ctx.name}-plan", "labels": _labels(ctx)},
            "data": {"plan.json": json.dumps(ctx.values["plan"], indent=1) + "\n", "profile": ctx.profile["name"]}}


def _volumes(ctx: _Ctx) -> tuple[list[dict], list[dict]]:
    values = ctx.values
    volumes = [{"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": values["shm"]["sizeLimit"]}},
               {"name": "tmp", "emptyDir": {}},
               {"name": "cache", "emptyDir": {"sizeLimit": values["cache"]["sizeLimit"]}},
               {"name": "plan", "configMap": {"name": f"{ctx.name}-plan"}}]
    mounts = [{"name": "shm", "mountPath": "/dev/shm"}, {"name": "tmp", "mountPath": "/tmp"},
              {"name": "cache", "mountPath": CACHE_DIR}, {"name": "plan", "mountPath": PLAN_MOUNT_DIR, "readOnly": True}]
    return volumes, mounts


def _image(values: dict) -> str:
    i = values["image"]
    return f"{i['repository']}@{i['digest']}" if i.get("digest") else f"{i['repository']}:{i['tag']}"


def _container(ctx: _Ctx, name: str, *, probes: bool = True) -> dict:
    v = ctx.values
    _, mounts = _volumes(ctx)
    c: dict[str, Any] = {"name": name, "image": _image(v), "imagePullPolicy": v["image"]["pullPolicy"],
                         # Explicit: KServe's templates name their own command; every pod starts the launcher.
                         "command": list(LAUNCHER), "env": _env(ctx), "resources": _resources(v),
                         "securityContext": dict(v["securityContext"]), "volumeMounts": mounts}
    if probes:
        c["ports"] = [{"name": "http", "containerPort": ctx.port, "protocol": "TCP"}]
        p = v["probes"]
        c.update(startupProbe=_probe(p["startup"], ctx.port), livenessProbe=_probe(p["liveness"], ctx.port),
                 readinessProbe=_probe(p["readiness"], ctx.port))
    return c


def _labels(ctx: _Ctx) -> dict:
    return {"app.kubernetes.io/name": ctx.name, "app.kubernetes.io/managed-by": "packager",
            "packager.dev/profile": ctx.profile["name"][:63].rstrip("-")}


def _serving_runtime(ctx: _Ctx) -> dict:
    volumes, _ = _volumes(ctx)
    container = _container(ctx, "kserve-container")
    container.pop("resources")  # the InferenceService's model spec carries them (KServe merges the two)
    return {"apiVersion": f"{GROUP}/v1alpha1", "kind": "ServingRuntime",
            "metadata": {"name": ctx.name, "labels": _labels(ctx)},
            "spec": {"supportedModelFormats": [{"name": MODEL_FORMAT, "version": "1", "autoSelect": False}],
                     "multiModel": False, "containers": [container],
                     "volumes": volumes}}


def _inference_service(ctx: _Ctx) -> dict:
    v = ctx.values
    model: dict[str, Any] = {"modelFormat": {"name": MODEL_FORMAT, "version": "1"}, "runtime": ctx.name,
                             "resources": _resources(v)}
    if ctx.uri:
        model["storageUri"] = ctx.uri
    predictor: dict[str, Any] = {"minReplicas": int(v["replicaCount"]), "maxReplicas": int(v["replicaCount"]),
                                 "securityContext": dict(v["podSecurityContext"]),
                                 "automountServiceAccountToken": False,
                                 "terminationGracePeriodSeconds": int(v["terminationGracePeriodSeconds"]),
                                 "model": model}
    if v.get("nodeSelector"):
        predictor["nodeSelector"] = dict(v["nodeSelector"])
    if v.get("tolerations"):
        predictor["tolerations"] = list(v["tolerations"])
    return {"apiVersion": f"{GROUP}/v1beta1", "kind": "InferenceService",
            "metadata": {"name": ctx.name, "labels": _labels(ctx),
                         # Standard: a plain Deployment and Service (RawDeployment is its deprecated alias).
                         "annotations": {"serving.kserve.io/deploymentMode": "Standard"}},
            "spec": {"predictor": predictor}}


def _pod(ctx: _Ctx, role: str) -> dict:
    v = ctx.values
    volumes, _ = _volumes(ctx)
    container = _container(ctx, "main", probes=role == "leader")
    if role == "leader":
        # The argv the plan chose, for the reader and for `packager rehearse`, which checks that the
        # launcher's dry run starts exactly this; the launcher itself re-plans from the mounted plan.
        argv = list(ctx.profile.get("engine_argv") or [])
        if "--port" in argv:
            argv[argv.index("--port") + 1] = str(ctx.port)  # the launcher binds PACKAGER_PORT
        if ctx.uri and argv[1:2] == ["serve"] and len(argv) > 2:
            argv[2] = KSERVE_MODEL_DIR  # where KServe puts the weights, as the launcher will say
        container["args"] = argv
    pod: dict[str, Any] = {"containers": [container], "volumes": volumes,
                           "securityContext": dict(v["podSecurityContext"]),
                           "terminationGracePeriodSeconds": int(v["terminationGracePeriodSeconds"])}
    if v.get("nodeSelector"):
        pod["nodeSelector"] = dict(v["nodeSelector"])
    if v.get("tolerations"):
        pod["tolerations"] = list(v["tolerations"])
    return pod


def _lora(ctx: _Ctx) -> dict | None:
    """spec.model.lora: the adapters (hf://REPO:REVISION, or file:// in the image for a local one; baked, so
    KServe fetches neither: the storage initializer is off) and vLLM's limits as the plan set them."""
    adapters = ctx.req.plan["model"].get("adapters") or []
    if not adapters:
        return None
    if ctx.uri is not None:
        # KServe's storage initializer would put them where the launcher's argv does not look (it reads
        # them at adapter_dir under the weights, and cannot write into KServe's read-only model mount).
        raise UserError(f"adapters ({', '.join(a['name'] for a in adapters)}) are served from the image; KServe "
                        "fetching the weights (--weights volume) would not put them there", field="adapters[0].source",
                        hint="use --weights baked: `packager build --adapter NAME=SOURCE` bakes them into the image")
    out = []
    for a in adapters:
        src = a.get("source") or {}
        # where it came from (the Hub at its pinned revision) or, a local one, where the image holds it
        uri = (f"hf://{src['repo']}" + (f":{src['revision']}" if src.get("revision") else "") if src.get("repo")
               else f"file://{adapter_dir(a['name'])}")
        out.append({"name": a["name"], "uri": uri})
    argv = list(ctx.profile.get("engine_argv") or [])
    limits = {key: int(argv[argv.index(flag) + 1]) for key, flag in (
        ("maxAdapters", "--max-loras"), ("maxRank", "--max-lora-rank"), ("maxCpuAdapters", "--max-cpu-loras"))
        if flag in argv}
    return {"adapters": out, **limits}


def _llm_inference_service(ctx: _Ctx) -> dict:
    lora = _lora(ctx)
    p = ctx.profile
    source = ctx.req.plan["model"].get("source") or {}
    uri = ctx.uri or (f"hf://{source['repo']}" + (f":{source['revision']}" if source.get("revision") else "")
                      if source.get("repo") else f"pvc://{ctx.name}-weights")
    spec: dict[str, Any] = {
        "model": {"uri": uri, "name": ctx.req.plan["model"].get("served_model_name") or ctx.req.plan["model"]["name"]},
        "replicas": int(ctx.values["replicaCount"]),
        "parallelism": {"tensor": int(p.get("tensor_parallel_size", 1)),
                        "pipeline": int(p.get("pipeline_parallel_size", 1))},
        "template": _pod(ctx, "leader"),
    }
    if lora:
        spec["model"]["lora"] = lora
    if ctx.uri is None:
        spec["storageInitializer"] = {"enabled": False}  # baked: the image holds the weights; uri names them
    if int(p.get("nodes", 1)) > 1:
        spec["worker"] = _pod(ctx, "worker")
    if ctx.req.router or ctx.req.gateway:
        router: dict[str, Any] = {"route": {}, "scheduler": {}, "gateway": {}}
        if ctx.req.gateway:
            ns, _, gw = ctx.req.gateway.rpartition("/")
            router["gateway"] = {"refs": [{"name": gw, **({"namespace": ns} if ns else {})}]}
        spec["router"] = router
    return {"apiVersion": f"{GROUP}/v1alpha2", "kind": "LLMInferenceService",
            "metadata": {"name": ctx.name, "labels": _labels(ctx)}, "spec": spec}


def to_yaml(objs: list[dict[str, Any]]) -> str:
    import yaml

    return "".join("---\n" + yaml.safe_dump(o, sort_keys=False) for o in objs)
