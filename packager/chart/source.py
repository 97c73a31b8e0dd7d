"""Where the one Helm chart lives: helm/ at the top of the checkout (packager/chart/helm in the package
and the wheel)."""
from __future__ import annotations

import os
from pathlib import Path

from packager.errors import UserError

ENV = "PACKAGER_HELM_CHART"


def chart_source() -> Path:
    """The chart inside the installed package, or $PACKAGER_HELM_CHART (a chart under development)."""
    override = os.environ.get(ENV)
    candidates = [Path(override)] if override else []
    candidates.append(Path(__file__).resolve().parent / "helm")
    for path in candidates:
        if (path / "Chart.yaml").is_file():
            return path
    raise UserError("the packager's Helm chart (helm/Chart.yaml) was not found",
                    field=ENV, hint=f"reinstall packager, or set {ENV} to a chart directory")
