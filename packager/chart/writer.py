"""Write a per-model chart: a copy of helm/ named after the model, values from the plan."""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterable

import yaml

from packager.chart import overrides
from packager.chart.source import chart_source
from packager.chart.validate import validate_values
from packager.chart.values import values_from_plan
from packager.chart.valuesfile import render_values
from packager.errors import UserError
from packager.outdir import check_replaceable, child, mark, replace_dir

VALUES_HEADER = (
    "# Written by `packager chart` from the plan in plan.json beside this file (mounted once, through the\n"
    "# ConfigMap). Override at install time (helm --set / -f) or regenerate with packager; README.md says how\n"
    "# to get from here to a running pod.\n"
)
PLAN_FILE = "plan.json"  # the chart's copy of the plan; templates/configmap.yaml reads it with .Files.Get


def chart_values(plan: dict[str, Any], *, image: str | None = None, sets: Iterable[str] = (),
                 values_files: Iterable[str | Path] = ()) -> dict[str, Any]:
    """Chart defaults <- plan <- -f files <- --set, validated against values.schema.json."""
    source = chart_source()
    defaults = yaml.safe_load((source / "values.yaml").read_text(encoding="utf-8"))
    values = overrides.deep_merge(defaults, values_from_plan(plan, image))
    values = overrides.apply(values, sets=sets, values_files=values_files)
    validate_values(source, values)
    return values


def chart_metadata(source: Path, plan: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    meta = yaml.safe_load((source / "Chart.yaml").read_text(encoding="utf-8"))
    model = plan["model"]
    meta["name"] = model["name"]
    meta["version"] = str(plan.get("packager_version") or meta["version"])
    meta["appVersion"] = str(values["image"]["tag"])
    meta["description"] = (f"{model.get('served_model_name') or model['name']} served with profile "
                           f"{values['profile']['name']} (written by packager)")
    return meta


def write_chart(plan: dict[str, Any], out_dir: Path, *, image: str | None = None,
                sets: Iterable[str] = (), values_files: Iterable[str | Path] = ()) -> Path:
    """Write `out_dir/<model name>/`, a complete chart; returns its path.

    Replaces a chart packager wrote there before (a marker file says so), so
    re-running is safe; anything else at that path is refused, never removed.
    The chart is written beside it first and moved into place whole.
    """
    source = chart_source()
    values = chart_values(plan, image=image, sets=sets, values_files=values_files)
    meta = chart_metadata(source, plan, values)
    target = child(out_dir, meta["name"], "model.name")
    if target.resolve() == source.resolve():
        raise UserError("refusing to overwrite the packager's own chart", field="--out")
    check_replaceable(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        staged = staging / target.name
        shutil.copytree(source, staged)
        (staged / "Chart.yaml").write_text(yaml.safe_dump(meta, sort_keys=False), encoding="utf-8")
        written = dict(values, plan={})  # the plan goes to its own file, not into values a person reviews
        (staged / PLAN_FILE).write_text(json.dumps(values.get("plan") or {}, indent=1) + "\n", encoding="utf-8")
        (staged / "values.yaml").write_text(
            render_values(written, (source / "values.yaml").read_text(encoding="utf-8"), VALUES_HEADER),
            encoding="utf-8")
        mark(staged, "chart")
        replace_dir(staged, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def chart_plan(chart_dir: Path, values: dict[str, Any]) -> dict[str, Any]:
    """The plan a chart's pods get: `plan:` in the values when given, else the chart's plan.json."""
    if values.get("plan"):
        return values["plan"]
    path = Path(chart_dir) / PLAN_FILE
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UserError(f"not valid JSON: {exc.msg}", file=str(path), line=exc.lineno) from None
