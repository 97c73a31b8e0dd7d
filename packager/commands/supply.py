"""The supply chain: `keys init`, `bundle`, `verify`, `import`."""
from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """No commands yet."""
