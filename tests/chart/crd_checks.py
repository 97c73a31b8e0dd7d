"""A custom object checked as an API server would: the CRD's openAPIV3Schema (defaults applied first, unknown
fields refused as `kubectl apply --validate=strict` does), then every `x-kubernetes-validations` CEL rule at its
schema node, evaluated by cel-python. A rule cel-python cannot evaluate (a Kubernetes CEL library function it
lacks) is returned in `Checked.unevaluated`, never counted as passed; transition rules (`oldSelf`) run only on
update, so a create skips them as the API server does, and they are listed too."""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import celpy
import jsonschema
import yaml

# kind -> CRD file in shared/crds (README there: versions and upstream commits).
CRD_FILES = {
    "LeaderWorkerSet": "leaderworkerset.x-k8s.io_leaderworkersets.yaml",
    "ScaledObject": "keda.sh_scaledobjects.yaml",
    "ServiceMonitor": "monitoring.coreos.com_servicemonitors.yaml",
    "InferencePool": "inference.networking.k8s.io_inferencepools.yaml",
    "HTTPRoute": "gateway.networking.k8s.io_httproutes.yaml",
    "InferenceObjective": "llm-d.ai_inferenceobjectives.yaml",
    "InferenceModelRewrite": "llm-d.ai_inferencemodelrewrites.yaml",
    "InferenceService": "serving.kserve.io_inferenceservices.yaml",
    "ServingRuntime": "serving.kserve.io_servingruntimes.yaml",
    "ClusterServingRuntime": "serving.kserve.io_clusterservingruntimes.yaml",
    "LLMInferenceService": "serving.kserve.io_llminferenceservices.yaml",
}
# The older InferenceObjective group, when an object names it.
_GROUP_FILES = {("InferenceObjective", "inference.networking.x-k8s.io"):
                "inference.networking.x-k8s.io_inferenceobjectives.yaml"}


@dataclass
class Checked:
    """What one object's check did: rules evaluated, and the ones it could not or must not evaluate."""
    kind: str
    evaluated: list[str] = field(default_factory=list)
    unevaluated: list[str] = field(default_factory=list)  # "path: rule: why"


def _strict(schema: Any) -> Any:
    """Reject unknown fields like `kubectl apply --validate=strict` does (the API server would prune them)."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if ("properties" in schema and "additionalProperties" not in schema
                and not schema.get("x-kubernetes-preserve-unknown-fields")):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


@lru_cache(maxsize=None)
def _crd(path: str) -> dict[str, Any]:
    return yaml.safe_load(Path(path).read_text())


@lru_cache(maxsize=None)
def version_schema(crds: str, kind: str, api_version: str) -> dict[str, Any]:
    group, _, version = api_version.partition("/")
    crd = _crd(str(Path(crds) / _GROUP_FILES.get((kind, group), CRD_FILES[kind])))
    assert crd["spec"]["group"] == group, f"{kind}: group {group} is not the CRD's {crd['spec']['group']}"
    assert crd["spec"]["names"]["kind"] == kind, f"{kind}: the CRD defines {crd['spec']['names']['kind']}"
    for v in crd["spec"]["versions"]:
        if v["name"] == version and v.get("served", True):
            return v["schema"]["openAPIV3Schema"]
    raise AssertionError(f"{kind}: the CRD serves no version {version}")


@lru_cache(maxsize=None)
def _validator(crds: str, kind: str, api_version: str) -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(_strict(copy.deepcopy(version_schema(crds, kind, api_version))))


def apply_defaults(schema: dict[str, Any], value: Any) -> Any:
    """Structural defaulting, as the API server does before it validates."""
    if isinstance(value, dict):
        for name, sub in (schema.get("properties") or {}).items():
            if name not in value and "default" in sub:
                value[name] = copy.deepcopy(sub["default"])
            if name in value:
                value[name] = apply_defaults(sub, value[name])
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for name in value:
                if name not in (schema.get("properties") or {}):
                    value[name] = apply_defaults(extra, value[name])
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [apply_defaults(schema["items"], v) for v in value]
    return value


_ENV = celpy.Environment()


@lru_cache(maxsize=None)
def _program(rule: str) -> Any:
    return _ENV.program(_ENV.compile(rule))


def _unsupported(err: Any) -> bool:
    """cel-python lacks the function (a Kubernetes CEL library: isURL, quantity, lowerAscii, format...)."""
    text = str(err.args[0] if getattr(err, "args", None) else err)
    return "undeclared reference" in text or "no matching overload" in text or "unsupported" in text.lower()


def _rules(schema: dict[str, Any], value: Any, path: str, out: Checked, failures: list[str]) -> None:
    for v in schema.get("x-kubernetes-validations") or []:
        rule = v["rule"]
        where = f"{path or '(root)'}: {rule}"
        if "oldSelf" in rule:
            out.unevaluated.append(f"{where}: transition rule, evaluated by the API server on update only")
            continue
        try:
            result = _program(rule).evaluate({"self": celpy.json_to_cel(value)})
        except Exception as exc:  # noqa: BLE001  cel-python raises its own error types
            result = exc if isinstance(exc, celpy.CELEvalError) else celpy.CELEvalError(str(exc))
        if isinstance(result, celpy.CELEvalError):
            if _unsupported(result):
                out.unevaluated.append(f"{where}: cel-python cannot evaluate it ({str(result)[:120]})")
            else:  # e.g. "no such key": the API server fails the rule too
                failures.append(f"{where}: {v.get('message') or 'evaluation error'} ({str(result)[:120]})")
            continue
        out.evaluated.append(where)
        if not bool(result):
            failures.append(f"{where}: {v.get('message') or 'rule is false'}")
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        for name, sub in props.items():
            if name in value and value[name] is not None:
                _rules(sub, value[name], f"{path}.{name}" if path else name, out, failures)
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for name, item in value.items():
                if name not in props:
                    _rules(extra, item, f"{path}[{name}]", out, failures)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            _rules(schema["items"], item, f"{path}[{i}]", out, failures)


def check(obj: dict[str, Any], crds: Path) -> Checked:
    """AssertionError naming the object, field and message when the API server would refuse `obj`."""
    kind, api_version = obj["kind"], obj["apiVersion"]
    schema = version_schema(str(crds), kind, api_version)
    obj = apply_defaults(schema, copy.deepcopy(obj))
    name = (obj.get("metadata") or {}).get("name")
    errors = sorted(_validator(str(crds), kind, api_version).iter_errors(obj), key=str)
    assert not errors, f"{kind} {name}: " + "; ".join(
        f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in errors[:5])
    out, failures = Checked(kind), []
    _rules(schema, obj, "", out, failures)
    assert not failures, f"{kind} {name}: CEL: " + "; ".join(failures[:5])
    return out
