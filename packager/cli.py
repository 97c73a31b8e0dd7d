"""The `packager` command line. Bad input: one message, exit code 2, no traceback."""
from __future__ import annotations

import json
import os
import sys
import time
from typing import Optional

import typer

from packager.commands import OBJECTIVE_HELP, adapter_option, build, chart, check_objective, kserve, models, rehearse, report, supply
from packager.errors import UserError

STARTED = time.time()  # `packager serve` counts "ready in N s" from here

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Plan, package and serve LLMs on any hardware.")

MODEL_HELP = "Model manifest (.yaml) or the name of a known one (`packager models` lists them)."
HW_HELP = "Hardware manifest (.yaml) or shorthand KEY[:COUNT[xNODES]], e.g. cpu, nvidia-l4:1, nvidia-h100-sxm-80gb:8x2. Default: this machine."


@app.command()
def validate(files: list[str] = typer.Argument(..., help="Model or hardware manifests, model names, or hardware shorthands.")) -> None:
    """Validate manifests; every problem names file, line and field."""
    from packager.manifests.load import hardware_from_doc, is_file_arg, load_hardware, model_from_doc
    from packager.manifests.resolve import close_names, known_models, resolve_model
    from packager.yamlsource import read_yaml

    failed = 0
    for arg in files:
        f = arg
        try:
            if not is_file_arg(f) and f in known_models():  # a model by name
                f = str(known_models()[f][0])
            elif not is_file_arg(f):
                try:
                    hw = load_hardware(f)
                except UserError:
                    if close_names(f, list(known_models())):
                        resolve_model(f)  # a mistyped model name: its did-you-mean is the better error
                    raise
                typer.echo(f"ok  {f}: hardware {hw.name}")
                continue
            doc = read_yaml(f)  # read once; its top-level keys say which kind of manifest it is
            if isinstance(doc.data, dict) and "pools" in doc.data:
                hw = hardware_from_doc(doc)
                typer.echo(f"ok  {arg}: hardware {hw.name}, {len(hw.pools)} pool(s)")
            else:
                m = model_from_doc(doc)
                typer.echo(f"ok  {arg}: model {m.name} ({m.parameters:,} params, context {m.context_length})")
        except UserError as exc:
            failed += 1
            typer.echo(f"error: {exc}", err=True)
    if failed:
        raise typer.Exit(2)


@app.command()
def schema(kind: str = typer.Argument(..., help="model or hardware")) -> None:
    """Print the JSON Schema of a manifest kind (for editors)."""
    from packager.manifests.hardware_schema import HardwareManifest
    from packager.manifests.model_schema import ModelManifest

    models = {"model": ModelManifest, "hardware": HardwareManifest}
    if kind not in models:
        raise UserError(f"unknown schema {kind!r}", field="KIND", hint="use `packager schema model` or `packager schema hardware`")
    typer.echo(json.dumps(models[kind].model_json_schema(), indent=2))


@app.command()
def profiles(
    model: str = typer.Argument(..., help=MODEL_HELP),
    hardware: Optional[str] = typer.Option(None, "--hardware", "-H", help=HW_HELP),
    objective: Optional[str] = typer.Option(None, "--objective", help=OBJECTIVE_HELP),
    max_model_len: Optional[int] = typer.Option(None, "--max-model-len", min=1, help="Override the manifest's context length."),
    as_json: bool = typer.Option(False, "--json", help="Print the plan (plan.json) instead of the table."),
    adapter: list[str] = adapter_option("Plan"),
) -> None:
    """Plan: every candidate profile, compatible or not, with the reasons and estimates."""
    from packager.planner import plan_files

    plan = plan_files(model, hardware, check_objective(objective), max_model_len=max_model_len, adapters=tuple(adapter))
    if as_json:
        typer.echo(json.dumps(plan.to_dict(), indent=2))
    else:
        from packager.table import render_plan
        typer.echo(render_plan(plan))
    if plan.selected is None:  # nothing fits: the plan (with advice) is printed, the exit code says so
        raise typer.Exit(1)


@app.command()
def serve(
    model: str = typer.Argument(..., help=MODEL_HELP),
    hardware: Optional[str] = typer.Option(None, "--hardware", "-H", help=HW_HELP),
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(8000, "--port", min=1, max=65535),
    max_model_len: Optional[int] = typer.Option(None, "--max-model-len", min=1),
    adapter: list[str] = adapter_option("Serve"),
) -> None:
    """Plan, then run the best fallback-runtime profile here (OpenAI-compatible server)."""
    from packager.extras import require
    from packager.planner import plan_files

    require("runtime", "torch", "numpy", "fastapi", "uvicorn", "prometheus_client")  # before the exec, not after
    plan = plan_files(model, hardware, None, max_model_len=max_model_len, adapters=tuple(adapter))
    remote = [a.name for a in plan.request.model.adapters if not a.local_path]
    if remote:
        raise UserError(f"adapters {', '.join(remote)} are not on this machine", field="adapters",
                        hint="serve runs adapters from local directories: download them and pass --adapter NAME=DIR")
    fallback = [p for p in plan.candidates if p.runtime in ("cpu", "triton")]
    if not fallback:
        raise UserError("no fallback-runtime profile fits this hardware", file=model,
                        hint="run `packager profiles` to see why; vLLM profiles are served by the image's launcher")
    profile = fallback[0]
    if profile.runtime == "triton":
        from packager.manifests.machine import this_machine

        if not any(p.accelerator.is_gpu for p in this_machine().pools):
            raise UserError(f"profile {profile.name} needs a GPU and this machine has none", field="--hardware",
                            hint="omit --hardware to plan for this machine")
    if not plan.request.model.local_path:
        from packager.local_weights import missing_weights

        raise missing_weights(plan.request.model.source, file=model)
    from runtimes import ready
    from runtimes.layout import ENV_READY

    argv = list(profile.engine_argv)
    argv[argv.index("--host") + 1] = host
    argv[argv.index("--port") + 1] = str(port)
    typer.echo(f"starting {profile.name} on http://{host}:{port}/v1", err=True)
    sys.stdout.flush()
    os.environ[ENV_READY] = ready.handoff(profile.name, plan.why, plan.request.hardware.name, STARTED)
    os.execv(sys.executable, [sys.executable, *argv[1:]])


# Every command module registers its own commands, in this order (the order `--help` lists them).
for _commands in (chart, kserve, build, report, rehearse, supply, models):
    _commands.register(app)

# `packager --help` lists the commands by what they are for, in this order.
PANELS = {
    "Plan": ("models", "init", "validate", "schema", "profiles", "report"),
    "Package": ("build", "chart", "kserve"),
    "Deploy and serve": ("publish", "rehearse", "deploy", "serve"),
    "Supply chain": ("bundle", "verify", "import", "keys"),
}


def _group_commands() -> None:
    order = [name for names in PANELS.values() for name in names]
    panel = {name: title for title, names in PANELS.items() for name in names}

    def name_of(info) -> str:
        return info.name or info.callback.__name__.replace("_", "-")

    for infos in (app.registered_commands, app.registered_groups):
        for info in infos:
            info.rich_help_panel = panel[name_of(info)]  # a new command must name its panel here
        infos.sort(key=lambda info: order.index(name_of(info)))


_group_commands()


def _command():
    """The click command tree, flags shown without a `<bool>` type: a flag takes no value."""
    cmd = typer.main.get_command(app)
    stack = [cmd]
    while stack:
        c = stack.pop()
        stack += list(getattr(c, "commands", {}).values())
        for param in c.get_params(c.context_class(c)):
            if getattr(param, "is_flag", False):
                param.metavar = ""
    return cmd


def main() -> None:
    try:
        rc = _command()(standalone_mode=False)  # click returns Exit codes instead of raising here
        sys.exit(rc if isinstance(rc, int) else 0)
    except UserError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except ModuleNotFoundError as exc:
        # An optional extra not installed: name the pip command; a module no extra brings is a bug (traceback).
        from packager.extras import extra_for, missing_extra_error

        extra = extra_for(exc.name)
        if extra is None:
            raise
        typer.echo(f"error: {missing_extra_error(exc.name.split('.')[0], extra)}", err=True)
        sys.exit(2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(130)
    except Exception as exc:
        # Usage errors (unknown option, bad value) arrive here under standalone_mode=False.
        # Matched by shape: typer may bundle its own copy of click.
        if hasattr(exc, "show") and isinstance(getattr(exc, "exit_code", None), int):
            exc.show()
            sys.exit(2)
        raise


if __name__ == "__main__":
    main()
