"""`packager kserve`: KServe objects for MODEL on HW, on stdout for `kubectl apply -f -` (registered by packager.cli)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from packager.commands import PROFILE_HELP, adapter_option


def kserve(
    model: Optional[str] = typer.Argument(None, help="Model manifest (.yaml) or the name of a known one (`packager models`)."),
    hardware: Optional[str] = typer.Option(None, "--hardware", help="Hardware manifest or catalog name (default: this machine)."),
    profile: Optional[str] = typer.Option(None, "--profile", help=PROFILE_HELP),
    weights: str = typer.Option("volume", "--weights", help="volume: KServe fetches them (hf:// at the pinned revision, "
                                "or pvc:// with --pvc); baked: the image's own; oci: refused (no modelcar image yet)."),
    kind: Optional[str] = typer.Option(None, "--kind", help="inferenceservice (ServingRuntime + InferenceService) or "
                                       "llminferenceservice; default: llminferenceservice for vLLM profiles."),
    pvc: Optional[str] = typer.Option(None, "--pvc", help="The claim (CLAIM or CLAIM/PATH) holding the weights: storageUri pvc://CLAIM/PATH."),
    router: bool = typer.Option(False, "--router", help="LLMInferenceService: KServe makes the HTTPRoute, InferencePool "
                                "and endpoint picker (spec.router)."),
    gateway: Optional[str] = typer.Option(None, "--gateway", help="NAME or NAMESPACE/NAME of the Gateway the route attaches to "
                                          "(implies --router)."),
    api_key_secret: Optional[str] = typer.Option(None, "--api-key-secret", help="NAME[:KEY] of a Secret holding the API "
                                                 "key (KEY default api-key): the engines read it as PACKAGER_API_KEY / "
                                                 "VLLM_API_KEY. --router and --gateway need it."),
    allow_unauthenticated: bool = typer.Option(False, "--allow-unauthenticated", help="--router/--gateway with no key: "
                                               "the API open to whatever reaches the Gateway, on purpose."),
    image: Optional[str] = typer.Option(None, "--image", help="Image reference (repo:tag[@sha256:...]); default: the plan's."),
    plan: Optional[Path] = typer.Option(None, "--plan", help="Use this plan.json instead of planning."),
    out: Optional[Path] = typer.Option(None, "--out", help="Write the YAML here instead of stdout."),
    adapter: list[str] = adapter_option(),
) -> None:
    """KServe objects for MODEL on HW: ServingRuntime + InferenceService (Standard), or an LLMInferenceService."""
    from packager.commands.chart import load_plan
    from packager.platforms.kserve import KServeRequest, objects, to_yaml

    text = to_yaml(objects(KServeRequest(load_plan(model, hardware, None, plan, profile, tuple(adapter)), weights=weights, kind=kind,
                                         image=image, pvc=pvc, router=router, gateway=gateway,
                                         api_key_secret=api_key_secret, allow_unauthenticated=allow_unauthenticated)))
    if out is None:
        typer.echo(text, nl=False)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(out)  # nothing half-written
    typer.echo(str(out))


def register(app: typer.Typer) -> None:
    app.command("kserve")(kserve)
