"""Models by name: `packager models`, `packager init`."""
from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """No commands yet."""
