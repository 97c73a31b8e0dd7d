"""Where pods run: accelerator resource key, node selector and tolerations for a plan's pool.

The rules are data (placement.yaml); a hardware manifest's own kubernetes hints win.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

_DATA = Path(__file__).with_name("placement.yaml")


@lru_cache(maxsize=1)
def _rules() -> dict[str, Any]:
    with open(_DATA, encoding="utf-8") as f:
        return yaml.safe_load(f)


def _hints(pool: dict[str, Any]) -> dict[str, Any]:
    return pool.get("kubernetes") or {}


def _accelerator_key(pool: dict[str, Any]) -> str:
    acc = pool.get("accelerator")
    if isinstance(acc, dict):
        return str(acc.get("key") or acc.get("name") or "")
    return str(acc or "")


def resource_key(vendor: str, pool: dict[str, Any]) -> str | None:
    """The extended resource that counts this vendor's devices (None on CPU)."""
    explicit = _hints(pool).get("resource_key")
    if explicit:
        return str(explicit)
    return _rules()["resource_keys"].get(vendor)


def node_selector(vendor: str, pool: dict[str, Any]) -> dict[str, str]:
    """The manifest's node selector, else a label the cluster's cloud or vendor add-on sets."""
    explicit = _hints(pool).get("node_selector") or {}
    if explicit:
        return {str(k): str(v) for k, v in explicit.items()}
    if vendor == "cpu":
        return {}
    cloud = _rules()["clouds"].get(pool.get("cloud") or "onprem") or {}
    key = _accelerator_key(pool)
    if "by_vendor" in cloud:
        cloud = cloud["by_vendor"].get(vendor) or {}
    value = None
    if "values" in cloud:
        value = cloud["values"].get(key)
    elif "by_count" in cloud:
        value = (cloud["by_count"].get(key) or {}).get(int(pool.get("count_per_node") or 1))
    return {cloud["label"]: str(value)} if value is not None else {}


def tolerations(vendor: str, pool: dict[str, Any]) -> list[dict[str, Any]]:
    """The manifest's tolerations plus the usual GPU-pool taints, without duplicates."""
    rules = _rules()
    out: list[dict[str, Any]] = []
    for tol in (
        list(_hints(pool).get("tolerations") or [])
        + list(rules["vendor_tolerations"].get(vendor) or [])
        + list(rules["cloud_tolerations"].get(pool.get("cloud") or "onprem") or [])
    ):
        tol = dict(tol)
        if tol not in out:
            out.append(tol)
    return out
