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
from packager.manifests.errors import validate
from packager.manifests.model import SERVED_NAME, SLUG
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
