"""The screen an engine prints once it is ready: model, profile, why it was chosen, hardware,
endpoint and how long the start took. Who planned the start (``packager serve``, the image's
launcher) hands the engine what it knows in ``PACKAGER_READY`` (JSON); standard library only."""
from __future__ import annotations

import json
import time
from typing import Mapping

from runtimes.layout import ENV_READY


def handoff(profile: str, why: str, hardware: str, started: float) -> str:
    """The value of PACKAGER_READY: what the planner decided, and when the start began (epoch s)."""
    return json.dumps({"profile": profile, "why": why, "hardware": hardware, "started": started})


def screen(names: list[str], endpoint: str, env: Mapping[str, str], started: float) -> str:
    """``started``: the engine's own start (epoch s); a handed-off earlier start wins."""
    try:
        got = json.loads(env.get(ENV_READY) or "{}")
        got = got if isinstance(got, dict) else {}
    except ValueError:
        got = {}
    began = got.get("started") if isinstance(got.get("started"), (int, float)) else started
    rows = [("model", ", ".join(names))]
    if got.get("profile"):
        rows.append(("profile", str(got["profile"])))
    if got.get("why"):
        rows.append(("why", str(got["why"])))
    if got.get("hardware"):
        rows.append(("hardware", str(got["hardware"])))
    rows += [("endpoint", f"{endpoint}/v1  (OpenAI API)"),
             ("probes", f"{endpoint}/v1/health/live, {endpoint}/v1/health/ready; metrics {endpoint}/metrics")]
    lines = [f"ready in {max(0.0, time.time() - began):.1f} s"] + [f"  {k:<9} {v}" for k, v in rows]
    return "\n".join(lines)
