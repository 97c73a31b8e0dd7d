"""`packager rehearse`: replay every container a chart renders, with the launcher in dry-run mode."""
from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """No commands yet."""
