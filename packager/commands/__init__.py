"""CLI command functions: each module has register(app), which packager.cli calls. The modules
import typer only at the top; what a command needs is imported when it runs, so `--help` stays fast."""
from __future__ import annotations

from typing import Optional

from packager.errors import UserError

OBJECTIVE_HELP = ("latency, throughput or cost (fewest devices whatever the precision); default: the manifest's "
                  "serving.objective.")
PROFILE_HELP = ("Pin one of the plan's compatible profiles instead of the planner's first "
                "(NIM's NIM_MODEL_PROFILE); `packager profiles` lists them.")


def adapter_option(verb: str = "Package"):
    """``--adapter NAME=SOURCE`` (repeatable), one spelling for every command; the values are parsed
    once, by ``packager.manifests.adapters.parse_adapter_arg``, when the manifest is read."""
    import typer

    return typer.Option([], "--adapter", help=f"{verb} a LoRA adapter too: NAME=DIR or NAME=REPO@REVISION "
                                              "(repeatable); clients pick it with model=NAME.")


def no_adapters_with_plan(adapters, plan_file) -> None:
    if adapters and plan_file is not None:
        raise UserError("--adapter with --plan: a plan already names its adapters", field="--adapter",
                        hint="plan with the adapters (`packager profiles MODEL --adapter ... --json`), or drop --plan")


def check_objective(value: Optional[str]) -> Optional[str]:
    """--objective, checked before any manifest is read."""
    if value is not None and value not in ("latency", "throughput", "cost"):
        raise UserError(f"objective {value!r} is not allowed", field="--objective", hint="use latency or throughput (or cost: fewest devices whatever the precision)")
    return value
