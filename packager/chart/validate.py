"""Check values against the chart's values.schema.json with Helm's own validator."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import helm_python as helm

from packager.errors import UserError

_AT = re.compile(r"at '(?P<path>[^']*)': (?P<why>.*)")
_EXTRA = re.compile(r"additional properties? (?P<names>'[^']*'(?:, '[^']*')*) not allowed")


def _field(path: str, why: str) -> str:
    """JSON pointer (+ the unknown key, if that is the complaint) -> dotted key."""
    parts = [p for p in path.split("/") if p]
    extra = _EXTRA.search(why)
    if extra:
        parts.append(extra.group("names").split(",")[0].strip().strip("'"))
    return ".".join(parts) or "(top level)"


def schema_error(detail: str) -> UserError:
    for line in detail.splitlines():
        m = _AT.search(line)
        if m:
            field = _field(m.group("path"), m.group("why"))
            hint = "see the chart's values.yaml for the keys and their types"
            if field.split(".")[0] in ("securityContext", "podSecurityContext"):
                hint = ("pods are held to the restricted Pod Security Standard: no privileged, root, privilege "
                        "escalation, or capability but NET_BIND_SERVICE (README, Security)")
            return UserError(m.group("why"), field=field, hint=hint)
    return UserError(detail.strip(), hint="see the chart's values.yaml for the keys and their types")


def validate_values(chart_dir: str | Path, values: dict[str, Any]) -> None:
    """UserError naming the first offending key when `values` break the chart's schema."""
    with helm.Chart.load(str(chart_dir)) as chart:
        try:
            chart.validate_schema(values)
        except helm.HelmValuesError as exc:
            raise schema_error(str(exc)) from None
