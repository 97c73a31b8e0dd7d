"""CLI command functions: each module has register(app), which packager.cli calls. The modules
import typer only at the top; what a command needs is imported when it runs, so `--help` stays fast."""
from __future__ import annotations

from typing import Optional

from packager.errors import UserError

OBJECTIVE_HELP = ("latency, throughput or cost (fewest devices whatever the precision); default: the manifest's "
                  "serving.objective.")
PROFILE_HELP = ("Pin one of the plan's compatible profiles instead of the planner's first "
                "(NIM's NIM_MODEL_PROFILE); `packager profiles` lists them.")


def check_objective(value: Optional[str]) -> Optional[str]:
    """--objective, checked before any manifest is read."""
    if value is not None and value not in ("latency", "throughput", "cost"):
        raise UserError(f"objective {value!r} is not allowed", field="--objective", hint="use latency or throughput (or cost: fewest devices whatever the precision)")
    return value
