"""`packager build`: the typer command function (registered by packager.cli)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from packager.commands import OBJECTIVE_HELP, PROFILE_HELP, adapter_option, no_adapters_with_plan


def build(
    model: Optional[str] = typer.Argument(None, help="Model manifest or name (default: the embedded default model)."),
    hardware: Optional[str] = typer.Option(None, "--hardware", help="Hardware manifest or catalog name."),
    out: Path = typer.Option(Path("out"), "--out", help="Output directory: DIR/<model>/plan.json and context/."),
    tag: Optional[str] = typer.Option(None, "--tag", help="Image tag (default packager/<model>:<version>-<family>)."),
    base_image: Optional[str] = typer.Option(None, "--base-image", help="FROM image (default: per runtime family)."),
    no_image: bool = typer.Option(False, "--no-image", help="Render the context only; build no image."),
    push: Optional[str] = typer.Option(None, "--push", help="Push the image to this registry (e.g. 127.0.0.1:5000)."),
    weights: str = typer.Option("baked", "--weights", help="baked: weights in their own layer; volume: mounted at run; "
                                "oci: a code-only image and the weights as a ModelPack OCI artifact (pushed with --push)."),
    opt: list[str] = typer.Option([], "--opt", help="key=value pass-through (secret, no_cache, cache_dir, torch, ...)."),
    plan: Optional[Path] = typer.Option(None, "--plan", help="Build from this plan.json instead of planning."),
    objective: Optional[str] = typer.Option(None, "--objective", help=OBJECTIVE_HELP),
    profile: Optional[str] = typer.Option(None, "--profile", help=PROFILE_HELP),
    adapter: list[str] = adapter_option(),
) -> None:
    """Render a build context (Dockerfile, wheelhouse, weights, wheel, plan) and build the image offline."""
    # Imported here: `packager --help` must not pay for the build modules.
    from packager.image import BuildRequest, parse_opts, report, run_build

    no_adapters_with_plan(adapter, plan)

    req = BuildRequest(model=model, out=out, hardware=hardware, objective=objective, plan_file=plan, tag=tag,
                       base_image=base_image, no_image=no_image, push=push, weights=weights,
                       opts=parse_opts(list(opt)), profile=profile, adapters=tuple(adapter))
    result = run_build(req)
    typer.echo(report(result))


def register(app: typer.Typer) -> None:
    app.command("build")(build)
