"""Where the one Helm chart (helm/) lives."""
from __future__ import annotations

import os
from pathlib import Path

from packager.errors import UserError

ENV = "PACKAGER_HELM_CHART"


def chart_source() -> Path:
    """helm/ beside the packager package (a checkout), or $PACKAGER_HELM_CHART."""
    override = os.environ.get(ENV)
    candidates = [Path(override)] if override else []
    candidates.append(Path(__file__).resolve().parents[2] / "helm")
    for path in candidates:
        if (path / "Chart.yaml").is_file():
            return path
    raise UserError("the packager's Helm chart (helm/Chart.yaml) was not found",
                    field=ENV, hint=f"set {ENV} to the helm/ directory of a packager checkout")
