"""Package a chart directory into a .tgz with Helm."""
from __future__ import annotations

from pathlib import Path

import helm_python as helm

from packager.errors import UserError


def find_chart(path: str | Path) -> Path:
    """A chart dir, a .tgz, or a build dir holding exactly one chart (at most two levels down)."""
    path = Path(path)
    if path.is_file() and path.name.endswith(".tgz"):
        return path
    if (path / "Chart.yaml").is_file():
        return path
    if path.is_dir():
        found = sorted({p.parent for pattern in ("*/Chart.yaml", "*/*/Chart.yaml") for p in path.glob(pattern)})
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise UserError(f"{path} holds {len(found)} charts: {', '.join(map(str, found))}",
                            file=str(path), hint="pass the chart directory itself")
    raise UserError("no Helm chart here (no Chart.yaml, not a .tgz)", file=str(path),
                    hint="run `packager chart MODEL --hardware HW --out DIR` first")


def package_chart(chart: str | Path, destination: str | Path) -> Path:
    """The chart as `destination/<name>-<version>.tgz` (an existing .tgz is returned as is)."""
    chart = find_chart(chart)
    if chart.is_file():
        return chart
    Path(destination).mkdir(parents=True, exist_ok=True)
    try:
        return Path(helm.package(str(chart), destination=str(destination)))
    except helm.HelmError as exc:
        raise UserError(f"helm could not package the chart: {exc}", file=str(chart)) from None
