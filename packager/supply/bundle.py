"""`packager bundle`'s supply side: one tar (an OCI image layout) that carries a release into an air gap.

packager.image.release builds the code image and pushes image and weights artifact to a working
registry; from that Release, here: sign (weights: model-signing, image: skopeo simple signing, chart: Helm provenance) ->
SBOM from the wheelhouse -> copy everything into one layout whose index names each part by
digest -> tar. The private keys are read by the signers only; nothing of them is written.
"""
from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass, replace
from pathlib import Path

import yaml

from packager.errors import UserError
from packager.supply import modelpack, oci_layout as L, registry, sign
from runtimes.oci_ref import parse_remote

PLAN_TYPE = "application/vnd.dev.packager.plan.v1+json"
SBOM_TYPE = "application/vnd.cyclonedx+json"
SIGNATURES_TYPE = "application/vnd.dev.packager.signatures.v1+json"
WEIGHTS_SIG_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
SIMPLE_SIG_TYPE = "application/vnd.dev.packager.simple-signing.v1"
HELM_CONFIG = "application/vnd.cncf.helm.config.v1+json"
HELM_CHART = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"
HELM_PROV = "application/vnd.cncf.helm.chart.provenance.v1.prov"
SUBJECT = "dev.packager.subject"
IDENTITY = "dev.packager.signed-identity"
LOOKASIDE_PATH = "dev.packager.lookaside-path"
WEIGHTS_TARGET = "dev.packager.weights.target"
CHART_TARGET = "dev.packager.chart.target"


@dataclass(frozen=True)
class Release:
    """What a build pushed: the parts a bundle is assembled from."""
    plan: dict
    image_ref: str  # host/repo@sha256:... (what was signed)
    image_identity: str  # host/repo:tag (the signed docker reference)
    weights: modelpack.ModelArtifact
    weights_ref: str  # host/repo@sha256:...
    weights_target: str  # repo:tag
    context: Path  # the build context (wheelhouse, dist)


def _strip_host(ref: str) -> str:
    return ref.split("/", 1)[1]


def assemble(rel: Release, keys, work: Path, working_registry: str, log) -> L.Layout:
    lay = L.Layout(work / "layout").init()
    host = parse_remote(rel.image_ref).registry
    # image and weights: copied as pushed (--preserve-digests: the signed digest is the one shipped)
    lookaside = work / "lookaside"
    sign.sign_image(rel.image_identity, keys, lookaside)
    pushed = parse_remote(rel.image_identity)
    repo_path = pushed.repository
    _, digest = registry.get_manifest(host, repo_path, pushed.tag)
    rel = replace(rel, image_ref=f"{host}/{repo_path}@{digest}")
    log(f"signed: image {rel.image_ref} (simple signing, key {keys.image})")
    for role, ref in (("image", rel.image_ref), ("weights", rel.weights_ref)):
        proc = subprocess.run([sign.skopeo(), "copy", "--quiet", "--preserve-digests", "--remove-signatures", *sign.tls_flags(host, "--src-tls-verify"),
                               f"docker://{ref}", f"oci:{lay.root}:{role}"], capture_output=True, text=True)
        if proc.returncode != 0:
            raise UserError(f"copying {ref} into the bundle failed: {proc.stderr.strip()[-600:]}", field="--registry")
    entries = {m["annotations"][L.REF_NAME]: m for m in lay.index()["manifests"]}
    image_target = _strip_host(rel.image_identity)
    lay.name("image", entries["image"], image_target, {IDENTITY: rel.image_identity})
    lay.name("weights", entries["weights"], rel.weights_target)
    image_digest = entries["image"]["digest"]
    tag = image_target.rsplit(":", 1)[1]
    repo = image_target.rsplit(":", 1)[0]

    # plan (the lockfile) and SBOM
    plan_bytes = (json.dumps(rel.plan, indent=2) + "\n").encode()
    lay.add_artifact("plan", f"{repo}:{tag}-plan", PLAN_TYPE,
                     [lay.add_bytes(plan_bytes, "application/json", {L.TITLE: "plan.json"})])
    sbom_file = sbom_of(rel.context, work / "sbom.cdx.json")
    lay.add_artifact("sbom", f"{repo}:{tag}-sbom", SBOM_TYPE,
                     [lay.add_file(sbom_file, SBOM_TYPE, {L.TITLE: "sbom.cdx.json", SUBJECT: image_digest})])
    log(f"sbom: {len(json.loads(sbom_file.read_text()).get('components', []))} components (CycloneDX 1.6)")

    # chart: pinned to the image and weights by digest, packaged, signed (Helm provenance)
    archive, prov = chart_of(rel, keys, work / "chart")
    meta = yaml.safe_load(subprocess_free_chart_yaml(archive))
    config = lay.add_bytes(json.dumps(meta, sort_keys=True).encode(), HELM_CONFIG)
    chart_target = f"charts/{meta['name']}:{meta['version']}"
    lay.add_artifact("chart", chart_target, HELM_CONFIG,
                     [lay.add_file(archive, HELM_CHART, {L.TITLE: archive.name}),
                      lay.add_file(prov, HELM_PROV, {L.TITLE: prov.name})], config=config)
    log(f"signed: chart {archive.name} (Helm provenance, key {keys.chart})")
    # signatures: the weights' model-signing bundle and the image's lookaside files
    wsig = sign.sign_weights([(f.path, f.rel) for f in rel.weights.files], keys, work / "weights.sig")
    log(f"signed: weights {rel.weights.digest} (model-signing, key {keys.model})")
    layers = [lay.add_file(wsig, WEIGHTS_SIG_TYPE, {L.TITLE: "weights.sig", SUBJECT: rel.weights.digest})]
    for f in sorted(p for p in lookaside.rglob("*") if p.is_file()):
        layers.append(lay.add_file(f, SIMPLE_SIG_TYPE, {L.TITLE: f.name, SUBJECT: image_digest,
                                                        LOOKASIDE_PATH: str(f.relative_to(lookaside)),
                                                        IDENTITY: rel.image_identity}))
    # The signatures name where the other parts live, so `verify REF` finds them in a registry.
    lay.add_artifact("signatures", f"{repo}:{tag}-signatures", SIGNATURES_TYPE, layers,
                     annotations={WEIGHTS_TARGET: rel.weights_target, CHART_TARGET: chart_target})

    return lay


def sbom_of(context: Path, out: Path) -> Path:
    """The build's own SBOM (the one its image label names), else one made from the same wheels."""
    from packager.supply.sbom import make_sbom

    built = context.parent / "sbom.cdx.json"
    return built if built.is_file() else make_sbom(out, context / "wheelhouse", context / "dist")


def chart_of(rel: Release, keys, dest: Path) -> tuple[Path, Path]:
    import helm_python as helm

    from packager.chart import write_chart
    from packager.supply.ociweights import chart_sets

    chart_dir = write_chart(rel.plan, dest / "src", image=rel.image_ref, sets=chart_sets(rel.weights_ref))
    archive = Path(helm.package(str(chart_dir), destination=str(dest)))
    return archive, sign.sign_chart(archive, keys)


def subprocess_free_chart_yaml(archive: Path) -> str:
    """Chart.yaml from inside the packaged chart (the Helm OCI config is its metadata as JSON)."""
    import tarfile

    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            if member.name.count("/") == 1 and member.name.endswith("/Chart.yaml"):
                return tar.extractfile(member).read().decode()
    raise UserError(f"{archive} holds no Chart.yaml", field="chart")


def clean(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
