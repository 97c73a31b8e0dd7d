"""`packager bundle`'s supply side: one tar (an OCI image layout) that carries a release into an air gap.

packager.image.release builds the code image and pushes image and weights artifact to a working
registry; from that Release, here: sign (weights: model-signing, image: skopeo simple signing, chart: Helm provenance) ->
SBOM from the wheelhouse -> copy everything into one layout -> the release statement (in-toto,
DSSE; packager.supply.statement) naming every part and signature by digest, signed last -> tar.
The private keys are read by the signers only; nothing of them is written.
"""
from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass, replace
from pathlib import Path

import yaml

from packager.adapter_files import statement_entries
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


@dataclass(frozen=True)
class Release:
    """What a build pushed: the parts a bundle is assembled from."""
    plan: dict
    image_ref: str  # host/repo@sha256:... (what was signed)
    image_identity: str  # host/repo:tag (the signed docker reference)
    weights: modelpack.ModelArtifact
    weights_ref: str  # host/repo@sha256:...
    context: Path  # the build context (wheelhouse, dist)


def assemble(rel: Release, keys, work: Path, working_registry: str, log) -> L.Layout:
    lay = L.Layout(work / "layout").init()
    host = parse_remote(rel.image_ref).registry
    # image and weights: copied as pushed (--preserve-digests: the signed digest is the one shipped)
    lookaside = work / "lookaside"
    sign.sign_image(rel.image_identity, keys, lookaside)
    pushed = parse_remote(rel.image_identity)
    _, digest = registry.get_manifest(host, pushed.repository, pushed.tag)
    rel = replace(rel, image_ref=f"{host}/{pushed.repository}@{digest}")
    log(f"signed: image {rel.image_ref} (simple signing, key {keys.image})")
    for role, ref in (("image", rel.image_ref), ("weights", rel.weights_ref)):
        proc = subprocess.run([sign.skopeo(), "copy", "--quiet", "--preserve-digests", "--remove-signatures", *sign.tls_flags(host, "--src-tls-verify"),
                               f"docker://{ref}", f"oci:{lay.root}:{role}"], capture_output=True, text=True)
        if proc.returncode != 0:
            raise UserError(f"copying {ref} into the bundle failed: {proc.stderr.strip()[-600:]}", field="--registry")
    parts = {m["annotations"][L.REF_NAME]: m for m in lay.index()["manifests"]}
    subjects = {}  # statement subject name -> descriptor

    # plan (the lockfile) and SBOM
    plan_bytes = (json.dumps(rel.plan, indent=2) + "\n").encode()
    subjects["plan/plan.json"] = lay.add_bytes(plan_bytes, "application/json", {L.TITLE: "plan.json"})
    parts["plan"] = lay.add_artifact("plan", PLAN_TYPE, [subjects["plan/plan.json"]])
    sbom_file = sbom_of(rel.context, work / "sbom.cdx.json")
    subjects["sbom/sbom.cdx.json"] = lay.add_file(sbom_file, SBOM_TYPE, {L.TITLE: "sbom.cdx.json"})
    parts["sbom"] = lay.add_artifact("sbom", SBOM_TYPE, [subjects["sbom/sbom.cdx.json"]])
    log(f"sbom: {len(json.loads(sbom_file.read_text()).get('components', []))} components (CycloneDX 1.6)")

    # chart: pinned to the image and weights by digest, packaged, signed (Helm provenance)
    archive, prov = chart_of(rel, keys, work / "chart")
    meta = yaml.safe_load(subprocess_free_chart_yaml(archive))
    config = lay.add_bytes(json.dumps(meta, sort_keys=True).encode(), HELM_CONFIG)
    subjects["chart/archive"] = lay.add_file(archive, HELM_CHART, {L.TITLE: archive.name})
    subjects["chart/provenance"] = lay.add_file(prov, HELM_PROV, {L.TITLE: prov.name})
    parts["chart"] = lay.add_artifact("chart", HELM_CONFIG, [subjects["chart/archive"], subjects["chart/provenance"]],
                                      config=config)
    log(f"signed: chart {archive.name} (Helm provenance, key {keys.chart})")
    # signatures: the weights' model-signing bundle and the image's simple signatures (lookaside order)
    wsig = sign.sign_weights([(f.path, f.rel) for f in rel.weights.files], keys, work / "weights.sig")
    log(f"signed: weights {rel.weights.digest} (model-signing, key {keys.model})")
    subjects["signatures/weights"] = lay.add_file(wsig, WEIGHTS_SIG_TYPE, {L.TITLE: "weights.sig"})
    for n, f in enumerate(image_signatures(lookaside, digest), 1):
        subjects[f"signatures/image-{n}"] = lay.add_file(f, SIMPLE_SIG_TYPE, {L.TITLE: f.name})
    parts["signatures"] = lay.add_artifact("signatures", SIGNATURES_TYPE,
                                           [d for n, d in subjects.items() if n.startswith("signatures/")])
    release_statement(lay, rel, parts, subjects, archive.name, keys)
    log(f"signed: release statement {pushed.repository}:{pushed.tag} (in-toto, DSSE, key {keys.model})")
    return lay


def image_signatures(lookaside: Path, digest: str) -> list[Path]:
    """The simple signatures skopeo wrote for `digest` (DIR/<repo>@sha256=<hex>/signature-N), in order."""
    dirs = [d for d in lookaside.rglob("*@sha256=" + digest.removeprefix("sha256:")) if d.is_dir()]
    sigs = [f for d in dirs for f in d.glob("signature-*") if f.name.removeprefix("signature-").isdigit()]
    if not sigs:
        raise UserError(f"skopeo wrote no simple signature for {digest}", field="--keys")
    return sorted(sigs, key=lambda f: int(f.name.removeprefix("signature-")))


def release_statement(lay: L.Layout, rel: Release, parts: dict, subjects: dict, archive: str, keys) -> dict:
    """The signed in-toto statement naming every part and signature by digest, as the `release` artifact."""
    from packager import __version__
    from packager.supply import statement
    from packager.supply.keys import MODEL_KEY

    pushed = parse_remote(rel.image_identity)
    named = [(p, parts[p]["digest"], parts[p]["mediaType"]) for p in statement.PARTS]
    named += [(n, d["digest"], d["mediaType"]) for n, d in subjects.items()]
    model = rel.plan["model"]
    adapters = statement_entries([(f.rel, f.sha256) for f in rel.weights.files], rel.plan)
    doc = statement.make(named, identity=pushed.repository, version=pushed.tag, signed_identity=rel.image_identity,
                         chart_archive=archive, packager_version=__version__,
                         model={"name": model["name"], "served_model_name": model.get("served_model_name"),
                                "profile": (rel.plan.get("selected") or {}).get("name"),
                                # each LoRA adapter and its files' digests (layers of the signed weights artifact)
                                **({"adapters": adapters} if adapters else {})})
    envelope = statement.sign(doc, keys.path(MODEL_KEY), keys.model)
    layer = lay.add_bytes(envelope, statement.ENVELOPE_TYPE, {L.TITLE: "release.dsse.json"})
    return lay.add_artifact(statement.REF, statement.ARTIFACT_TYPE, [layer])


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
