"""Reading a plan.json given with `--plan`: the fields that become paths,
Kubernetes names or a command line are held to the rules a fresh plan obeys.

A plan file is input like any manifest: its `model.name` names the chart's
directory (`--out DIR/<name>`) and the release, so `../victim` or `/etc` must
never get that far. Errors name the file, the line and the field (exit 2).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field

from packager.errors import UserError
from packager.manifests.validation_errors import validate
from packager.manifests.model_schema import SERVED_NAME, SLUG
from packager.yamlsource import read_yaml

PROFILE_NAME = r"^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$"


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")  # the rest of the plan is the planner's business


class PlanModel(_Open):
    name: str = Field(pattern=SLUG, description="DNS-1123 name: chart directory, release, image name")
    served_model_name: Optional[str] = Field(None, pattern=SERVED_NAME)


class PlanProfile(_Open):
    name: str = Field(pattern=PROFILE_NAME)
    engine_argv: list[str] = Field(default_factory=list)


class PlanFile(_Open):
    schema_version: Any = None
    model: PlanModel
    selected: Optional[PlanProfile] = None
    candidates: list[PlanProfile] = Field(default_factory=list)


def check_served_name(name: str) -> bool:
    return bool(re.match(SERVED_NAME, name)) and ".." not in name.split("/")


def read_validated_plan(path: str | Path) -> dict[str, Any]:
    """The plan in `path` as a dict, after validation (UserError, exit 2)."""
    doc = read_yaml(path)  # JSON is YAML: the same reader gives every field its line
    try:
        plan = validate(doc, PlanFile, "plan")
    except UserError as exc:
        exc.hint = ("names become directories and Kubernetes names: lower-case letters, digits, '-' and '.'; "
                    "use a plan written by `packager profiles --json` or `packager build`")
        raise
    served = plan.model.served_model_name
    if served is not None and not check_served_name(served):
        raise UserError(f"{served!r}: '..' is not allowed in a served model name", file=doc.file,
                        line=doc.line_of(("model", "served_model_name")), field="model.served_model_name",
                        hint="use the name clients send as `model`, e.g. org/model-name")
    return doc.data


def pin_profile(plan: dict[str, Any], name: str, flag: str = "--profile") -> dict[str, Any]:
    """The plan with `name` as its selected profile (NIM's NIM_MODEL_PROFILE), the rest ranked after it.

    Only a compatible profile can be pinned; an unknown or rejected name is exit 2 naming the
    compatible ones, with the planner's reasons when it was rejected.
    """
    names = [c["name"] for c in plan.get("candidates", [])]
    chosen = next((c for c in plan.get("candidates", []) if c["name"] == name), None)
    if chosen is None:
        rejected = next((r for r in plan.get("rejected", []) if r.get("name") == name), None)
        why = f" ({'; '.join(rejected.get('reasons', []))})" if rejected else ""
        what = "is not compatible with this hardware" if rejected else (
            f"is not a profile of this plan ({absent_reason(plan, name)})")
        raise UserError(f"profile {name!r} {what}{why}", field=flag,
                        hint=("use one of the compatible profiles: " + ", ".join(names)) if names
                        else "no profile fits: see `packager profiles` for the reasons")
    rest = [c for c in plan["candidates"] if c["name"] != name]
    return {**plan, "selected": chosen, "candidates": [chosen, *rest], "why": f"{name} was pinned by {flag}"}


_PROFILE = re.compile(r"^(?P<runtime>vllm|triton|cpu)-(?P<precision>[a-z0-9-]+?)(?:-kvfp8)?-tp(?P<tp>\d+)-pp(?P<pp>\d+)"
                      r"-(?P<objective>latency|throughput)(?:-.+)?$")
_VARIANT_PRECISION = {"awq": "awq-int4", "gptq": "gptq-int4", "fp8": "fp8"}  # planner/candidates.py's names


def absent_reason(plan: dict[str, Any], name: str) -> str:
    """Why the planner never made a profile of this name for this plan, in words."""
    m = _PROFILE.match(name)
    if not m:
        return "profile names read RUNTIME-PRECISION[-kvfp8]-tpN-ppN-OBJECTIVE, e.g. vllm-bf16-tp1-pp1-throughput"
    pools = (plan.get("hardware") or {}).get("pools") or []
    keys = [((p.get("accelerator") or {}).get("key") or "cpu") for p in pools]
    gpu = any(k != "cpu" for k in keys)
    if m["runtime"] == "cpu" and gpu:
        return f"cpu profiles are planned for CPU hardware only; this plan's is {', '.join(keys)}"
    if m["runtime"] != "cpu" and not gpu:
        return f"{m['runtime']} profiles need a GPU; this plan's hardware is CPU only"
    devices = max((int(p.get("count_per_node") or 1) * int(p.get("nodes") or 1) for p in pools), default=1)
    need = int(m["tp"]) * int(m["pp"])
    if need > devices:
        return f"it needs tp x pp = {need} devices; the plan's hardware has {devices}"
    serving = (plan.get("model") or {}).get("serving") or {}
    allowed = list(serving.get("precisions") or []) + [
        _VARIANT_PRECISION.get(v.get("method"), "") for v in serving.get("quantized_variants") or []]
    if allowed and m["precision"] not in allowed:
        return (f"precision {m['precision']} is not in the manifest's serving.precisions nor a quantized variant "
                f"({', '.join(allowed)})")
    return ("the planner makes tp a power of two up to a node's devices, pp one stage per node, and the fallback "
            "runtimes tp1-pp1 only")


def portable_plan(plan: dict[str, Any]) -> dict[str, Any]:
    """The plan without this machine's paths (the weights' local path, `source.path` of the model and
    its variants): what goes into an image, a chart or a bundle. Paths there mean nothing elsewhere,
    and say too much about the build host."""
    model = dict(plan.get("model") or {})
    if "local_path" in model:
        model["local_path"] = None
    if isinstance(model.get("source"), dict):
        model["source"] = {k: v for k, v in model["source"].items() if k != "path"}
    if model.get("adapters"):  # LoRA adapters: their directories here, likewise
        model["adapters"] = [{**a, "local_path": None, "source": {k: v for k, v in a.get("source", {}).items()
                                                                  if k != "path"}} for a in model["adapters"]]
    serving = model.get("serving")
    if isinstance(serving, dict) and serving.get("quantized_variants"):
        model["serving"] = {**serving, "quantized_variants": [
            {**v, "source": {k: x for k, x in v.get("source", {}).items() if k != "path"}}
            for v in serving["quantized_variants"]]}
    return {**plan, "model": model}
