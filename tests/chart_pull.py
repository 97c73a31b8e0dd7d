"""Pull a pushed chart back, as a cluster's Helm would: the tests' check that publish put a
whole chart where it said (packager itself only pushes)."""
from __future__ import annotations

from pathlib import Path

import helm_python as helm

from packager.errors import UserError
from packager.publish import parse_registry


def pull_chart(chart_ref: str, destination: str | Path) -> Path:
    """Download `oci://host/path/name:version` into `destination`; returns the .tgz."""
    base, _, version = chart_ref.rpartition(":")
    if "/" in version or not base.startswith("oci://"):
        raise UserError(f"{chart_ref!r} is not oci://host/path/name:version", field="chart")
    reg = parse_registry(base)
    Path(destination).mkdir(parents=True, exist_ok=True)
    try:
        helm.pull(base, version=version, destination=str(destination), plain_http=reg.plain_http)
    except helm.HelmError as exc:
        raise UserError(f"pulling {chart_ref} failed: {exc}", field="chart") from None
    return Path(destination) / f"{base.rsplit('/', 1)[-1]}-{version}.tgz"
