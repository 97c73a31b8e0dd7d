"""`packager rehearse`: replay every container a chart renders, with the launcher in dry-run mode."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from packager.commands import PROFILE_HELP


def rehearse(
    chart_dir: Path = typer.Argument(..., help="A chart written by `packager chart` or `packager build`, or a YAML "
                                     "file of objects (`packager kserve --out FILE`)."),
    hardware: Optional[str] = typer.Option(None, "--hardware", help="KEY[:COUNT[xNODES]] the pods stand on "
                                           "(PACKAGER_HARDWARE); default: what the chart was planned for."),
    profile: Optional[str] = typer.Option(None, "--profile", help=PROFILE_HELP + " Set as PACKAGER_PROFILE in every pod."),
    registry: Optional[str] = typer.Option(None, "--registry", help="HOST:PORT to look for the image in when the "
                                           "local engine lacks it."),
    set_: list[str] = typer.Option([], "--set", help="Override a chart value (dotted key=YAML), as helm does."),
    values: list[Path] = typer.Option([], "-f", "--values", help="Merge a values file."),
    as_json: bool = typer.Option(False, "--json", help="Print the launch records and checks as JSON."),
) -> None:
    """Would every pod of this chart start? Replays each container's start (dry run) and checks it."""
    from packager.rehearse import Rehearsal, rehearse as run
    from packager.rehearse.readout import as_dict, text

    outcome = run(Rehearsal(chart_dir, hardware=hardware, profile=profile, registry=registry,
                            sets=tuple(set_), values_files=tuple(str(v) for v in values)))
    typer.echo(json.dumps(as_dict(outcome), indent=1) if as_json else text(outcome))
    if not outcome.ok:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("rehearse")(rehearse)
