"""Where packager keeps caches and tool venvs on this machine: ${XDG_CACHE_HOME:-$HOME/.cache}/packager/.

One place, so scripts, tests and builds agree, and nothing depends on where the checkout lives."""
from __future__ import annotations

import os
from pathlib import Path


def cache_dir(*parts: str) -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base.joinpath("packager", *parts)
