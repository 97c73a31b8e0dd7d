"""`packager report`: the plan as one self-contained HTML page (charts with their JS inlined)."""
from __future__ import annotations

from typing import Optional

import typer

from packager.commands import OBJECTIVE_HELP, check_objective

HW_HELP = "Hardware manifest (.yaml) or shorthand KEY[:COUNT[xNODES]]. Default: this machine."


def report(
    model: str = typer.Argument(..., help="Model manifest (.yaml) or the name of a known one (`packager models`)."),
    hardware: Optional[str] = typer.Option(None, "--hardware", "-H", help=HW_HELP),
    objective: Optional[str] = typer.Option(None, "--objective", help=OBJECTIVE_HELP),
    max_model_len: Optional[int] = typer.Option(None, "--max-model-len", min=1, help="Override the manifest's context length."),
    out: str = typer.Option("report.html", "--out", "-o", help="Where to write the HTML file."),
) -> None:
    """Write the plan as one HTML file: memory per profile, speed against concurrency, rejections."""
    from packager.planner import plan_files
    from packager.report import write_report

    plan = plan_files(model, hardware, check_objective(objective), max_model_len=max_model_len)
    path = write_report(plan, out)
    sel = plan.selected
    typer.echo(f"wrote {path} ({len(plan.candidates)} profiles, {len(plan.rejected)} rejected; "
               f"selected: {sel.name if sel else 'nothing fits'})")


def register(app: typer.Typer) -> None:
    app.command("report")(report)
