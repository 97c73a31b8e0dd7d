"""`packager build`: plan -> context (Dockerfile, wheelhouse, weights, wheel, plan) -> image."""
from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

from packager import adapter_files, local_weights as weights_mod
from packager.image import docker, projectwheel, wheelhouse
from packager.image.contents import image_context, launcher_config
from packager.image.context import DEFAULT_PORT, MODEL_DIR
from packager.image.outputs import push, run_command, weights_chart_sets, write_chart_beside
from packager.families import family_for, image_ref, slug
from packager.image.render import default_base_image, render_dockerfile
from packager.cachedir import cache_dir
from packager.errors import UserError
from packager.manifests.resolve import default_model_manifest
from packager.outdir import check_replaceable, child, mark, replace_dir
from packager.planfile import pin_profile, portable_plan, read_validated_plan
from packager.planner import make_plan, model_path_in_image, plan_files
from packager.planner.checkpoint import local_source, prefix_in_model_dir
from runtimes.layout import variant_dir

OPT_KEYS = {
    "secret": "a BuildKit secret for the build, docker's syntax: id=NAME,env=VAR or id=NAME,src=FILE (repeatable)",
    "no_cache": "true: build without the engine's layer cache",
    "cache_dir": "where wheelhouses are cached (default $PACKAGER_CACHE_DIR or ~/.cache/packager)",
    "torch": "the torch requirement for the wheelhouse (default torch==2.13.0)",
    "requirements": "extra requirements for the image, comma-separated",
    "python": "the base image's python3 (default /usr/bin/python3)",
    "port": f"the port the server listens on in the image (default {DEFAULT_PORT})",
}


@dataclass(frozen=True)
class BuildRequest:
    model: str | None
    out: Path
    hardware: str | None = None
    objective: str | None = None
    plan_file: Path | None = None
    tag: str | None = None
    base_image: str | None = None
    no_image: bool = False
    push: str | None = None
    weights: str = "baked"
    opts: tuple[tuple[str, str], ...] = ()
    profile: str | None = None  # pin one of the plan's compatible profiles (--profile)
    adapters: tuple[str, ...] = ()  # --adapter NAME=SOURCE


@dataclass(frozen=True)
class BuildResult:
    plan_path: Path
    context: Path
    tag: str
    image: docker.BuiltImage | None
    run_command: str
    chart: Path | None = None
    pushed: str | None = None
    notes: tuple[str, ...] = field(default=())


def parse_opts(pairs: list[str]) -> tuple[tuple[str, str], ...]:
    out = []
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or key not in OPT_KEYS:
            known = "\n".join(f"  {k}: {v}" for k, v in OPT_KEYS.items())
            raise UserError(f"--opt {pair!r}: expected key=value with a known key", field="--opt",
                            hint=f"known keys:\n{known}")
        out.append((key, value))
    return tuple(out)


def _opt(req: BuildRequest, key: str, default: str | None = None) -> str | None:
    values = [v for k, v in req.opts if k == key]
    return values[-1] if values else default


def _opts(req: BuildRequest, key: str) -> tuple[str, ...]:
    return tuple(v for k, v in req.opts if k == key)


def same_weights(a: dict, b: dict) -> bool:
    return a.get("quantized_variant") == b.get("quantized_variant")


def load_plan(req: BuildRequest, log) -> tuple[dict, Path | None]:
    """The lockfile (from --plan, else the planner) and the weights' path here when it was looked up.

    An image holds one checkpoint: the selected profile's (a quantized variant's own files at its
    pinned revision, or the base model's). Profiles that need another checkpoint leave the image's plan.
    """
    if req.plan_file:
        plan = read_validated_plan(req.plan_file)
        return (pin_profile(plan, req.profile) if req.profile else plan), None
    model = req.model or str(default_model_manifest())
    first = plan_files(model, req.hardware, objective=req.objective, adapters=req.adapters)
    draft = first.to_dict()
    if req.profile:
        draft = pin_profile(draft, req.profile)
    chosen = draft.get("selected")
    if chosen is None:
        return draft, None
    source = local_source(draft["model"], chosen)
    variant = chosen.get("quantized_variant")
    root = None
    if req.weights == "volume" and source.get("kind") == "huggingface":
        # Nothing to download at package time: the launcher fetches into its volume at start.
        ref = model_path_in_image(source)
    else:
        root = weights_mod.locate(source)
        ref = weights_mod.in_image_ref(root)
    keep = tuple(c["name"] for c in draft["candidates"] if same_weights(c, chosen))
    log(f"plan: model path in the image is {variant_dir(variant) if variant else ref}")
    # Re-plan with the in-image path in engine_argv: same request, no second manifest read.
    plan = make_plan(replace(first.request, model_ref=MODEL_DIR if variant else ref, only_profiles=keep)).to_dict()
    return (pin_profile(plan, req.profile) if req.profile else plan), root


def run_build(req: BuildRequest, log=None) -> BuildResult:
    log = log or (lambda msg: print(msg, file=sys.stderr))
    if req.weights not in ("baked", "volume", "oci"):
        raise UserError(f"--weights {req.weights!r}: expected baked, volume or oci", field="--weights")
    plan, weights_root = load_plan(req, log)
    selected = plan.get("selected")
    if not selected:
        advice = "\n".join(f"  - {a}" for a in plan.get("advice", [])) or "  (the planner gave no advice)"
        raise UserError("no profile fits this model on this hardware; nothing to build:\n" + advice,
                        field="selected", hint="try other --hardware, or see `packager profiles` for rejections")
    family = family_for(selected)
    name = slug(plan["model"]["name"])
    final = child(req.out, name, "model.name")
    check_replaceable(final)  # before any work: a directory that is not ours is never replaced
    # Render into a staging dir and move it into place at the end: a failure leaves nothing half-written.
    out = final.parent / f".{name}.partial"
    created_parent = not final.parent.exists()
    if out.exists():
        check_replaceable(out)
        shutil.rmtree(out)
    ctx_dir = out / "context"
    ctx_dir.mkdir(parents=True)
    mark(out, "build")
    try:
        return _render_and_build(req, plan, weights_root, selected, family, name, out, final, log)
    finally:
        if out.exists():
            shutil.rmtree(out, ignore_errors=True)
            if created_parent and not any(final.parent.iterdir()):
                final.parent.rmdir()


def _commit(staged: Path, final: Path) -> None:
    """Swap the staged output into place (the previous one, packager's, is removed)."""
    replace_dir(staged, final)


def _render_and_build(req: BuildRequest, plan: dict, weights_root: Path | None, selected: dict, family, name: str,
                      out: Path, final: Path, log) -> BuildResult:
    ctx_dir = out / "context"
    plan_text = json.dumps(plan, indent=2, sort_keys=False) + "\n"
    (out / "plan.json").write_text(plan_text)
    log(f"plan: {final / 'plan.json'} (selected {selected['name']}, family {family.name})")

    # weights: baked into context/model/, or only their checksums under volume.
    source = local_source(plan["model"], selected)
    recorded = source.get("sha256") or {}
    prefix = prefix_in_model_dir(selected)  # a variant's files sit in their own directory under the model dir
    w: weights_mod.Weights | None = None
    if req.weights in ("baked", "oci") or source.get("kind") != "huggingface":
        w = weights_mod.checksum(weights_root or weights_mod.locate(source), recorded, prefix=prefix)
        log(f"weights: {w.root} ({w.size_bytes / 2**20:.0f} MiB), sha256 {w.files[0][1][:12]}...")
    if req.weights == "volume":
        adapter_files.check_volume_mode(plan)
    elif w is not None:  # LoRA adapters travel with the weights: same layer or artifact, same digest checks
        w = adapter_files.with_adapters(w, plan)
    model_dir = ctx_dir / "model"
    if req.weights == "baked":
        weights_mod.place(w, model_dir)
    elif model_dir.exists():
        shutil.rmtree(model_dir)

    # deps: the wheelhouse, cached by requirements hash, linked into the context.
    extra = tuple(r.strip() for r in (_opt(req, "requirements") or "").split(",") if r.strip())
    fam = family
    if _opt(req, "torch"):
        fam = replace(family, torch=_opt(req, "torch"))
    root = projectwheel.project_root()
    reqs = wheelhouse.project_requirements(root / "pyproject.toml", fam, extra)
    cache = Path(_opt(req, "cache_dir") or os.environ.get("PACKAGER_CACHE_DIR")
                 or cache_dir())
    wh = wheelhouse.ensure_wheelhouse(cache, fam, reqs, log=log)
    wheelhouse.link_into(wh.path, ctx_dir / "wheelhouse")

    # code: the project's wheel.
    wheel = projectwheel.build_project_wheel(ctx_dir / "dist", root, log=log)

    # plan + launcher config, last in the image.
    # The image's copy drops the build host's weights path: it means nothing (and says too much) in a container.
    image_plan = portable_plan(plan)
    (ctx_dir / "plan.json").write_text(json.dumps(image_plan, indent=2) + "\n")
    port = int(_opt(req, "port") or DEFAULT_PORT)
    # oci: the launcher sees a volume (the artifact's files mounted at the model dir, digests checked)
    launcher_mode = "volume" if req.weights == "oci" else req.weights
    (ctx_dir / "image.json").write_text(json.dumps(launcher_config(plan, family, launcher_mode, w, port), indent=2) + "\n")

    secrets = _opts(req, "secret")
    secret_ids = tuple(_secret_id(s) for s in secrets)
    base = req.base_image or default_base_image(family, selected.get("vendor"))
    ictx = image_context(plan, family, base, req.weights, w, wheel.name, secret_ids, port,
                         python=_opt(req, "python") or "/usr/bin/python3")
    # supply chain: the SBOM (every image) and the weights artifact (oci) named by digest in the labels
    from packager.supply.ociweights import build_labels

    extra = build_labels(plan, req.weights, w, (ctx_dir / "wheelhouse", ctx_dir / "dist"), out / "sbom.cdx.json", log)
    ictx = replace(ictx, labels=tuple(sorted({**dict(ictx.labels), **extra}.items())))
    (ctx_dir / "Dockerfile").write_text(render_dockerfile(ictx))
    (ctx_dir / ".dockerignore").write_text("Dockerfile\n.dockerignore\n")

    tag = req.tag or image_ref(plan)
    chart = write_chart_beside(plan, out, tag, log, weights_chart_sets(req, plan, w, tag))
    _commit(out, final)
    ctx_dir = final / "context"
    chart = final / chart.relative_to(out) if chart else None
    if chart:
        log(f"chart: {chart}")
    log(f"context: {ctx_dir} (Dockerfile from templates/{family.template})")
    run_cmd = run_command(tag, launcher_mode, w, port, plan)
    if req.no_image:
        ok, why = docker.engine_reachable()
        note = "" if ok else f" (no engine reachable: {why})"
        log(f"--no-image: context rendered, no image built{note}. Build it by hand with:\n"
            f"  DOCKER_BUILDKIT=1 docker build --network none -t {tag} {ctx_dir}")
        return BuildResult(final / "plan.json", ctx_dir, tag, None, run_cmd, chart)
    built = docker.build(ctx_dir, tag, secrets=secrets, no_cache=_opt(req, "no_cache") == "true")
    if req.push and req.weights == "oci":  # pushed once per content; a code change pushes only the image
        from packager.supply.ociweights import push_built_weights

        push_built_weights(plan, w, tag, req.push, log)
    pushed = push(tag, req.push, chart, log) if req.push else None
    return BuildResult(final / "plan.json", ctx_dir, tag, built, run_cmd, chart, pushed)


def _secret_id(spec: str) -> str:
    fields = dict(p.partition("=")[::2] for p in spec.split(","))
    if not fields.get("id"):
        raise UserError(f"--opt secret={spec!r}: needs id=NAME", field="--opt secret",
                        hint="e.g. --opt secret=id=hf_token,env=HF_TOKEN")
    return fields["id"]
