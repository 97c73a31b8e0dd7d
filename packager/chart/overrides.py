"""User overrides on top of plan values: `--set key.path=yaml` and `-f values.yaml`, merged like Helm."""
from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any, Iterable

import yaml

from packager.errors import UserError

# Dots split keys unless escaped: nodeSelector.nvidia\.com/gpu\.product=X
_UNESCAPED_DOT = re.compile(r"(?<!\\)\.")


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Maps merge key by key, anything else replaces; None deletes the key (as in Helm)."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_set(expr: str) -> dict[str, Any]:
    """`a.b.c=value` -> {"a": {"b": {"c": value}}}, the value typed as YAML (`3`, `true`, `[x]`)."""
    key, sep, raw = expr.partition("=")
    parts = [p.replace("\\.", ".") for p in _UNESCAPED_DOT.split(key.strip())]
    if not sep or not all(parts):
        raise UserError(f"--set {expr!r} is not key.path=value", field=key or expr,
                        hint="e.g. --set replicaCount=2 --set image.tag=v2")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise UserError(f"--set value {raw!r} is not valid YAML: {exc}", field=key,
                        hint="quote strings that contain ':' or '{'") from None
    for part in reversed(parts):
        value = {part: value}
    return value


def load_values_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UserError(f"cannot read values file: {exc.strerror}", file=str(path)) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise UserError(f"not valid YAML: {getattr(exc, 'problem', exc)}", file=str(path),
                        line=mark.line + 1 if mark else None) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError("a values file must be a mapping at the top level", file=str(path), line=1)
    return data


def apply(values: dict[str, Any], *, sets: Iterable[str] = (), values_files: Iterable[str | Path] = ()) -> dict[str, Any]:
    """Files first, then --set, each later one winning (Helm's order)."""
    for f in values_files:
        values = deep_merge(values, load_values_file(f))
    for expr in sets:
        values = deep_merge(values, parse_set(expr))
    return values
