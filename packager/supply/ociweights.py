"""`--weights oci`: the weights travel as one ModelPack artifact beside a code-only image.

The artifact lives in `<image repository>-weights` under a content tag, so every image and
replica of the model reuses the one push; a code change pushes only the small image.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from packager.supply import modelpack, registry
from runtimes import oci_ref


@dataclass(frozen=True)
class PushedWeights:
    artifact: modelpack.ModelArtifact
    pushed: registry.Pushed


def weights_repository(image_tag: str) -> str:
    """`packager/m:0.1.0-cpu` (any registry host dropped) -> `packager/m-weights`."""
    return f"{oci_ref.parse(image_tag).repository}-weights"


def weights_spec(plan: dict) -> tuple[Path, dict, str]:
    """(where the selected profile's weights are here, their recorded sha256, their dir under the model dir)."""
    from packager.local_weights import locate
    from packager.planner.checkpoint import local_source, prefix_in_model_dir

    selected = plan.get("selected") or {}
    source = local_source(plan["model"], selected)  # a quantized variant has its own checkpoint
    return locate(source), source.get("sha256") or {}, prefix_in_model_dir(selected)


def artifact_for(plan: dict) -> modelpack.ModelArtifact:
    root, recorded, prefix = weights_spec(plan)
    return modelpack.build_artifact(plan, root, recorded, prefix)


def push_weights(plan: dict, registry_host: str, image_tag: str, log=print) -> PushedWeights:
    return push_artifact(artifact_for(plan), registry_host, image_tag, log)


def push_artifact(art: modelpack.ModelArtifact, registry_spec: str, image_tag: str, log=print) -> PushedWeights:
    from packager.publish import parse_registry

    reg = parse_registry(registry_spec)
    repo = "/".join(p for p in (reg.path, weights_repository(image_tag)) if p)
    pushed = registry.push_artifact(art, reg.host, repo, modelpack.tag_for(art), insecure=reg.insecure)
    log(f"weights: {pushed.ref} ({len(art.files)} file(s), {art.size_bytes / 2**20:.0f} MiB; "
        f"uploaded {pushed.uploaded_bytes / 2**20:.1f} MiB, already there {pushed.reused_bytes / 2**20:.1f} MiB)")
    return PushedWeights(art, pushed)


def chart_sets(weights_ref: str) -> list[str]:
    """Chart values that mount the artifact (the chart's weights.oci; the modelcar by default)."""
    return ["weights.mode=oci", f"weights.oci.artifact={weights_ref}"]


# -- hooks for `packager build` -------------------------------------------------------------------

SBOM_LABEL = "dev.packager.sbom"
WEIGHTS_LABEL = "dev.packager.weights.artifact"


def build_labels(plan: dict, mode: str, w, wheel_dirs: tuple[Path, ...], sbom_out: Path, log=print) -> dict[str, str]:
    """Image labels naming the SBOM (every image) and, under --weights oci, the weights artifact, by digest.

    Both digests are known before the image is built: the SBOM is made from the wheelhouse the build
    installs, reproducibly; the artifact's manifest from the weights' digests the build just computed."""
    labels = {}
    try:
        from packager.supply.sbom import make_sbom

        make_sbom(sbom_out, *wheel_dirs)
        from runtimes.digests import sha256_file

        labels[SBOM_LABEL] = "sha256:" + sha256_file(sbom_out)
        log(f"sbom: {sbom_out} (CycloneDX, {labels[SBOM_LABEL][:19]}...)")
    except Exception as exc:  # cyclonedx-bom is optional for a build: say so, label nothing
        log(f"sbom: none ({str(exc).splitlines()[0]}; pip install cyclonedx-bom)")
    if mode == "oci":
        labels[WEIGHTS_LABEL] = modelpack.from_weights(plan, w).digest
    return labels


def weights_ref(plan: dict, w, tag: str, registry_spec: str) -> str:
    """HOST/REPO@sha256:... where `push` puts the artifact of `w` (the chart mounts exactly that)."""
    from packager.publish import parse_registry

    reg = parse_registry(registry_spec)
    repo = "/".join(p for p in (reg.path, weights_repository(tag)) if p)
    return f"{reg.host}/{repo}@{modelpack.from_weights(plan, w).digest}"


def push_built_weights(plan: dict, w, tag: str, registry_spec: str, log=print) -> PushedWeights:
    return push_artifact(modelpack.from_weights(plan, w), registry_spec, tag, log)
