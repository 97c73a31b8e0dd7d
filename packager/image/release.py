"""`packager bundle`: build the code image, push it and its weights artifact to a working
registry, then hand the Release to supply to sign and assemble into one tar.

The build step lives here, above both the image build and supply: supply's weights artifact is
part of `build --weights oci`, so supply must not import the image build back.
"""
from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

from packager import __version__
from packager.errors import UserError
from packager.families import family_for, slug
from packager.image.pipeline import BuildRequest, run_build
from packager.manifests.resolve import default_model_manifest
from packager.planner import plan_files
from packager.supply.bundle import Release, assemble
from packager.supply.keys import load_keys
from packager.supply.oci_layout import pack
from runtimes.oci_ref import parse


@dataclass(frozen=True)
class BundleRequest:
    model: str | None
    hardware: str | None
    keys: Path
    out: Path
    base_image: str | None = None
    registry: str = "127.0.0.1:5000"  # the working registry the parts are pushed to and signed in
    weights: str = "oci"
    tag: str | None = None  # the image tag (default: the build's default with an -oci suffix)
    adapters: tuple[str, ...] = ()  # --adapter NAME=SOURCE



def bundle(req: BundleRequest, log=print) -> Path:
    keys = load_keys(req.keys, private=True)
    out = Path(req.out)
    if out.suffix != ".tar":
        raise UserError(f"{out}: a bundle is a .tar file", field="--out", hint="e.g. --out model.bundle.tar")
    if out.is_dir():
        raise UserError(f"{out} is a directory", field="--out", hint="name the .tar file to write")
    with tempfile.TemporaryDirectory(prefix="packager-bundle-") as tmp:
        work = Path(tmp)
        rel = build_release(req, work / "build", log)
        lay = assemble(rel, keys, work, req.registry, log)
        pack(lay.root, out)
    log(f"bundle: {out} ({out.stat().st_size / 2**20:.0f} MiB)")
    return out


def build_release(req: BundleRequest, build_out: Path, log) -> Release:
    """Build the image (code only under --weights oci), push it and the weights artifact."""
    from packager.publish import push_image
    from packager.supply.ociweights import push_weights

    mode = req.weights
    result = run_build(BuildRequest(model=req.model, out=build_out, hardware=req.hardware, tag=req.tag or default_tag(req),
                                    base_image=req.base_image, weights=mode, adapters=req.adapters),
                       log=lambda m: log(m))
    plan = json.loads(result.plan_path.read_text())
    pushed_weights = push_weights(plan, req.registry, result.tag, log)
    image_ref = push_image(result.tag, req.registry)
    identity = f"{parse(image_ref).name}:{parse(result.tag).tag}"
    return Release(plan, image_ref, identity, pushed_weights.artifact, pushed_weights.pushed.ref, result.context)


def default_tag(req: BundleRequest) -> str:
    """The build's default name with `-oci`: a code-only image never takes a baked image's tag."""
    plan = plan_files(req.model or str(default_model_manifest()), req.hardware).to_dict()
    if not plan.get("selected"):
        raise UserError("no profile fits this model on this hardware; nothing to bundle", field="--hardware",
                        hint="see `packager profiles MODEL --hardware HW`")
    return f"packager/{slug(plan['model']['name'])}:{__version__}-{family_for(plan['selected']).name}-{req.weights}"
