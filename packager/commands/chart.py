"""`packager chart`, `publish`, `deploy`: typer command functions (registered by packager.cli)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from packager.commands import OBJECTIVE_HELP, PROFILE_HELP, adapter_option, no_adapters_with_plan

from packager.errors import UserError

_SET_HELP = "Override a value: dotted key, YAML value (repeatable), e.g. --set replicaCount=2."
_VALUES_HELP = "Merge a values YAML file (repeatable; later files win; --set wins over files)."


def load_plan(model: Optional[str], hardware: Optional[str], objective: Optional[str],
              plan_file: Optional[Path], profile: Optional[str] = None, adapters: tuple[str, ...] = ()) -> dict[str, Any]:
    """A plan.json file when given, else the planner's plan for MODEL on HW (with ``--adapter`` values);
    `profile` pins one."""
    from packager.planfile import pin_profile, read_validated_plan

    no_adapters_with_plan(adapters, plan_file)
    if plan_file is not None:
        plan = read_validated_plan(plan_file)
    elif model is None:
        raise UserError("no model given", field="MODEL",
                        hint="pass a model manifest or name (`packager models` lists them) or --plan plan.json")
    else:
        # Imported here: `packager --help` must not pay for the planner.
        from packager.planner import plan_for_image

        plan = plan_for_image(model, hardware, objective, adapters).to_dict()
    return pin_profile(plan, profile) if profile else plan


def chart(
    model: Optional[str] = typer.Argument(None, help="Model manifest (.yaml) or the name of a known one (`packager models`)."),
    hardware: Optional[str] = typer.Option(None, "--hardware", help="Hardware manifest or catalog name (default: this machine)."),
    objective: Optional[str] = typer.Option(None, "--objective", help=OBJECTIVE_HELP),
    out: Path = typer.Option(Path("out"), "--out", help="Directory the chart is written into, as OUT/<model>/."),
    image: Optional[str] = typer.Option(None, "--image", help="Image reference (repo:tag[@sha256:...]); default: the plan's."),
    set_: list[str] = typer.Option([], "--set", help=_SET_HELP),
    values: list[Path] = typer.Option([], "-f", "--values", help=_VALUES_HELP),
    plan: Optional[Path] = typer.Option(None, "--plan", help="Use this plan.json instead of planning."),
    profile: Optional[str] = typer.Option(None, "--profile", help=PROFILE_HELP),
    adapter: list[str] = adapter_option(),
) -> None:
    """Write a Helm chart for MODEL on HW: the packager's chart with values from the plan."""
    from packager.chart import write_chart

    path = write_chart(load_plan(model, hardware, objective, plan, profile, tuple(adapter)), out, image=image,
                       sets=set_, values_files=values)
    typer.echo(str(path))


def publish(
    chart_or_build_dir: Path = typer.Argument(..., metavar="DIR", help="Chart dir, chart .tgz, or a build dir holding one chart."),
    registry: str = typer.Option("oci://127.0.0.1:5000/charts", "--registry", help="OCI registry for the chart."),
    image: Optional[str] = typer.Option(None, "--image", help="Local image to push (default: the one the chart's values name)."),
    image_registry: Optional[str] = typer.Option(None, "--image-registry", help="Registry for the image (default: the chart registry's host)."),
    skip_image: bool = typer.Option(False, "--skip-image", help="Publish the chart only."),
    insecure: bool = typer.Option(False, "--insecure-registry",
                                  help="Plain HTTP to a registry off loopback (default: only 127.0.0.0/8, ::1, localhost)."),
) -> None:
    """Push the image, then the chart (pinned to the pushed image's digest), to an OCI registry."""
    from packager.publish import publish as run

    result = run(chart_or_build_dir, registry, image=image, image_registry=image_registry, skip_image=skip_image,
                 insecure=insecure)
    if result.image_ref:
        typer.echo(f"image: {result.image_ref}")
    typer.echo(f"chart: {result.chart_ref} ({result.chart_digest})")


def deploy(
    model: Optional[str] = typer.Argument(None, help="Model manifest (.yaml) or the name of a known one (`packager models`)."),
    hardware: Optional[str] = typer.Option(None, "--hardware", help="Hardware manifest or catalog name."),
    objective: Optional[str] = typer.Option(None, "--objective", help=OBJECTIVE_HELP),
    namespace: str = typer.Option("default", "--namespace", "-n", help="Kubernetes namespace."),
    release: Optional[str] = typer.Option(None, "--release", help="Release name (default: the model name)."),
    image: Optional[str] = typer.Option(None, "--image", help="Image reference (repo:tag[@sha256:...]); with --keys "
                                        "the imported release, HOST:PORT/REPO:TAG."),
    set_: list[str] = typer.Option([], "--set", help=_SET_HELP),
    values: list[Path] = typer.Option([], "-f", "--values", help=_VALUES_HELP),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the rendered manifests; contact no cluster."),
    plan: Optional[Path] = typer.Option(None, "--plan", help="Use this plan.json instead of planning."),
    profile: Optional[str] = typer.Option(None, "--profile", help=PROFILE_HELP),
    keys: Optional[Path] = typer.Option(None, "--keys", help="Public keys (`packager keys init`): deploy the imported "
                                        "release named by --image, after verifying it: its signed chart and plan, the "
                                        "image and weights pinned by the verified digests."),
    allow_unverified: bool = typer.Option(False, "--allow-unverified", help="Deploy a chart rendered here with "
                                          "weights.mode=oci without verifying anything."),
) -> None:
    """helm upgrade --install the model's chart (or, with --keys, a verified imported release) into the current cluster."""
    if keys is not None:
        from packager.deploy import deploy_verified

        given = [flag for flag, v in (("MODEL", model), ("--hardware", hardware), ("--objective", objective),
                                      ("--plan", plan), ("--profile", profile), ("--allow-unverified", allow_unverified)) if v]
        if given:
            raise UserError(f"--keys deploys the signed release as verified; {', '.join(given)} would change it",
                            field=given[0], hint="drop them, or deploy a plan without --keys (unverified)")
        typer.echo(deploy_verified(image, keys, namespace=namespace, release=release, sets=set_, values_files=values,
                                   dry_run=dry_run), nl=False)
        return
    from packager.deploy import default_release, deploy as run, dry_run_header

    the_plan = load_plan(model, hardware, objective, plan, profile)
    text = run(the_plan, namespace=namespace, release=release, image=image, sets=set_, values_files=values,
               dry_run=dry_run, allow_unverified=allow_unverified)
    if dry_run:  # first the helm command that installs exactly this, from the chart `packager chart` writes
        same = [*([model] if model else []), *_flags(("--hardware", hardware), ("--objective", objective),
                                                     ("--plan", plan), ("--profile", profile), ("--image", image)),
                *(x for s in set_ for x in ("--set", s)), *(x for f in values for x in ("-f", str(f)))]
        text = dry_run_header(release=release or default_release(the_plan), namespace=namespace,
                              chart_command=["packager", "chart", *same, "--out", "out"],
                              chart_dir=f"out/{the_plan['model']['name']}") + text
    typer.echo(text, nl=False)


def _flags(*pairs: tuple[str, Any]) -> list[str]:
    return [x for flag, value in pairs if value for x in (flag, str(value))]


def register(app: typer.Typer) -> None:
    app.command("chart")(chart)
    app.command("publish")(publish)
    app.command("deploy")(deploy)
