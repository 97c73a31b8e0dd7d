"""Load the planner's rules (rules.yaml) once."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import yaml


@lru_cache(maxsize=1)
def rules() -> dict:
    return yaml.safe_load(Path(__file__).with_name("rules.yaml").read_text(encoding="utf-8"))
