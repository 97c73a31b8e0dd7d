"""`packager verify BUNDLE --keys DIR`: every digest and every signature, with the public keys only.

Each check prints one line (ok / FAIL, what, why). A failure names the part and, for the
weights, the file. Exit codes (cli): 0 all pass, 1 a check failed, 2 bad input.
"""
from __future__ import annotations

import json
import os
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from packager.errors import UserError
from packager.supply import gpg, modelpack, oci_layout as L, sign
from packager.supply.bundle import (HELM_CHART, HELM_PROV, IDENTITY, SBOM_TYPE, SIMPLE_SIG_TYPE, SUBJECT,
                                    WEIGHTS_SIG_TYPE)
from packager.supply.keys import CHART_PUB, IMAGE_PUB, MODEL_PUB, KeySet, load_keys
from runtimes import oci_ref
from runtimes.digests import oci_digest_file

ROLES = ("image", "weights", "chart", "plan", "sbom", "signatures")
SBOM_LABEL = "dev.packager.sbom"
WEIGHTS_LABEL = "dev.packager.weights.artifact"


@dataclass
class Report:
    checks: list[tuple[bool, str, str]] = field(default_factory=list)  # (ok, what, detail)
    digests: dict[str, str] = field(default_factory=dict)  # role -> manifest digest whose blobs all matched

    def add(self, ok: bool, what: str, detail: str) -> bool:
        self.checks.append((ok, what, detail))
        return ok

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(ok for ok, _, _ in self.checks)

    def failures(self) -> list[str]:
        return [f"{what}: {detail}" for ok, what, detail in self.checks if not ok]

    def lines(self) -> list[str]:
        return [f"{'ok  ' if ok else 'FAIL'}  {what:<28} {detail}" for ok, what, detail in self.checks]


def verify_bundle(bundle: Path, keys_dir: Path) -> Report:
    keys = load_keys(keys_dir, private=False)
    with tempfile.TemporaryDirectory(prefix="packager-verify-") as tmp:
        lay = L.unpack(Path(bundle), Path(tmp) / "layout")
        return verify_layout(lay, keys, Path(tmp))


def verify_layout(lay: L.Layout, keys: KeySet, tmp: Path) -> Report:
    rep = Report()
    try:
        entries = lay.entries()
    except (ValueError, OSError) as exc:
        raise UserError(f"the bundle's index.json does not parse: {exc}", field="index.json") from None
    for role in ROLES:
        if role not in entries:
            rep.add(False, role, "missing from the bundle's index")
    good = {role: check_digests(lay, e, rep) for role, e in entries.items()}
    if "weights" in entries and good.get("weights") and "signatures" in entries:
        check_weights(lay, entries["weights"], entries["signatures"], keys, tmp, rep)
    if "image" in entries and good.get("image") and "signatures" in entries:
        check_image(lay, entries["image"], entries["signatures"], keys, tmp, rep)
    if "chart" in entries and good.get("chart"):
        check_chart(lay, entries["chart"], keys, tmp, rep)
    if "image" in entries and good.get("image"):
        check_labels(lay, entries, rep)
    return rep


def check_digests(lay: L.Layout, entry: L.Entry, rep: Report) -> bool:
    """The manifest and every blob it names: present, the right size, the right sha256."""
    try:
        mpath = lay.blob_path(entry.digest)
    except ValueError as exc:
        return rep.add(False, f"{entry.role} manifest", str(exc))
    if not mpath.is_file() or oci_digest_file(mpath) != entry.digest:
        return rep.add(False, f"{entry.role} manifest", f"{entry.digest} missing or altered")
    manifest = json.loads(mpath.read_bytes())
    blobs = [("config", manifest["config"])] if "config" in manifest else []
    blobs += [(ly.get("annotations", {}).get(modelpack.FILEPATH) or ly.get("annotations", {}).get(L.TITLE)
               or f"layer {i}", ly) for i, ly in enumerate(manifest.get("layers", []))]
    ok = True
    for name, desc in blobs:
        path = lay.blob_path(desc["digest"])
        if not path.is_file():
            ok = rep.add(False, f"{entry.role} {name}", f"blob {desc['digest']} missing")
        elif path.stat().st_size != desc["size"] or oci_digest_file(path) != desc["digest"]:
            ok = rep.add(False, f"{entry.role} {name}",
                         f"altered: its bytes hash to {oci_digest_file(path)}, the manifest names {desc['digest']}")
    if ok:
        rep.digests[entry.role] = entry.digest
        rep.add(True, f"{entry.role} digests", f"manifest {entry.digest[:19]}... and {len(blobs)} blob(s) match")
    return ok


def _signature_layers(lay: L.Layout, sigs: L.Entry, media_type: str, subject: str) -> list[dict]:
    manifest = lay.read_json(sigs.digest)
    return [ly for ly in manifest.get("layers", [])
            if ly["mediaType"] == media_type and ly.get("annotations", {}).get(SUBJECT) == subject]


def check_weights(lay: L.Layout, weights: L.Entry, sigs: L.Entry, keys: KeySet, tmp: Path, rep: Report) -> None:
    """model-signing over the artifact's files, rebuilt at their filepaths from the blobs."""
    manifest = lay.read_json(weights.digest)
    if manifest.get("artifactType") != modelpack.ARTIFACT_TYPE:
        rep.add(False, "weights artifact", f"artifactType {manifest.get('artifactType')!r} is not ModelPack's")
        return
    files = [(lay.blob_path(ly["digest"]), ly["annotations"][modelpack.FILEPATH]) for ly in manifest["layers"]]
    found = _signature_layers(lay, sigs, WEIGHTS_SIG_TYPE, weights.digest)
    # A manifest rewritten to match altered files has another digest: check the files against the
    # bundle's weights signature anyway, so the failure names the file, not only the digest.
    candidates = found or [ly for ly in lay.read_json(sigs.digest).get("layers", []) if ly["mediaType"] == WEIGHTS_SIG_TYPE]
    if not candidates:
        rep.add(False, "weights signature", f"no model-signing signature for {weights.digest}")
        return
    root = sign.model_dir(files, tmp / "weights")
    try:
        sign.verify_weights(root, lay.blob_path(candidates[0]["digest"]), keys.path(MODEL_PUB))
    except Exception as exc:  # model-signing raises ValueError with the file it disagrees on
        rep.add(False, "weights signature", f"model-signing: {exc}")
        return
    names = ", ".join(rel for _, rel in files)
    if not found:
        rep.add(False, "weights signature", f"the files verify, but the signature names artifact "
                f"{candidates[0]['annotations'].get(SUBJECT)}, not {weights.digest}")
        return
    rep.add(True, "weights signature", f"model-signing, key {keys.model[:19]}...: {names}")


def check_image(lay: L.Layout, image: L.Entry, sigs: L.Entry, keys: KeySet, tmp: Path, rep: Report) -> None:
    found = _signature_layers(lay, sigs, SIMPLE_SIG_TYPE, image.digest)
    # The signed docker reference (the build registry's name): a digest check, wherever the image is now.
    identity = found[0].get("annotations", {}).get(IDENTITY, "") if found else ""
    if not found or not identity:
        rep.add(False, "image signature", f"no simple signature for {image.digest}")
        return
    ok, why = standalone_verify(lay.blob_path(image.digest), identity,
                                [lay.blob_path(s["digest"]) for s in found], keys, tmp)
    rep.add(ok, "image signature", why)


def standalone_verify(manifest: Path, identity: str, signatures: list[Path], keys: KeySet, tmp: Path) -> tuple[bool, str]:
    """containers/image's own check (skopeo standalone-verify) with only the public key in the keyring."""
    with gpg.temp_home() as home:
        fprs = gpg.import_keys(home, keys.path(IMAGE_PUB))
        errors = []
        for sig in signatures:
            for fpr in fprs:
                proc = subprocess.run([sign.skopeo(), "standalone-verify", str(manifest), identity, fpr, str(sig)],
                                      capture_output=True, text=True, env={**os.environ, "GNUPGHOME": str(home)})
                if proc.returncode == 0:
                    return True, f"simple signing by {fpr} for {identity} ({proc.stdout.strip()})"
                errors.append(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}")
    return False, "skopeo standalone-verify: " + "; ".join(errors)


def check_chart(lay: L.Layout, chart: L.Entry, keys: KeySet, tmp: Path, rep: Report) -> None:
    manifest = lay.read_json(chart.digest)
    by_type = {ly["mediaType"]: ly for ly in manifest.get("layers", [])}
    if HELM_CHART not in by_type or HELM_PROV not in by_type:
        rep.add(False, "chart signature", "the chart artifact lacks its archive or its .prov")
        return
    # Helm checks the archive by its file name in the .prov: restore both names.
    d = tmp / "chart"
    d.mkdir(exist_ok=True)
    archive = d / by_type[HELM_CHART]["annotations"][L.TITLE]
    prov = d / by_type[HELM_PROV]["annotations"][L.TITLE]
    for path, desc in ((archive, by_type[HELM_CHART]), (prov, by_type[HELM_PROV])):
        path.write_bytes(lay.blob_path(desc["digest"]).read_bytes())
    try:
        who = sign.verify_chart(archive, prov, keys.path(CHART_PUB))
    except ValueError as exc:
        rep.add(False, "chart signature", f"Helm provenance: {exc}")
        return
    rep.add(True, "chart signature", f"Helm provenance of {archive.name} signed by {who}")


def check_labels(lay: L.Layout, entries: dict[str, L.Entry], rep: Report) -> None:
    """The image names its SBOM (and, under --weights oci, its weights artifact) by digest."""
    manifest = lay.read_json(entries["image"].digest)
    config = lay.read_json(manifest["config"]["digest"])
    labels = (config.get("config") or {}).get("Labels") or {}
    if "sbom" in entries:
        sbom = [ly for ly in lay.read_json(entries["sbom"].digest).get("layers", []) if ly["mediaType"] == SBOM_TYPE]
        want = labels.get(SBOM_LABEL)
        got = sbom[0]["digest"] if sbom else None
        if want:
            rep.add(want == got, "sbom", f"image label {SBOM_LABEL}={want}" + ("" if want == got else f", bundle has {got}"))
        else:
            rep.add(True, "sbom", f"{got} attached (this image carries no {SBOM_LABEL} label)")
    want = labels.get(WEIGHTS_LABEL)
    if want and "weights" in entries:
        got = entries["weights"].digest
        rep.add(want.endswith(got), "weights binding", f"image label {WEIGHTS_LABEL}={want}"
                + ("" if want.endswith(got) else f", bundle has {got}"))


def verify_source(source: str, keys_dir: Path) -> Report:
    """A bundle file, or an imported image reference (HOST:PORT/REPO:TAG) and its sidecars."""
    if Path(source).is_file() or source.endswith(".tar"):
        return verify_bundle(Path(source), keys_dir)
    keys = load_keys(keys_dir, private=False)
    return verify_ref(source, keys)


def verify_ref(ref: str, keys: KeySet) -> Report:
    """Copy the image and its sidecar artifacts out of the registry into a layout, then check it."""
    from packager.supply.bundle import CHART_TARGET, WEIGHTS_TARGET

    parsed = oci_ref.parse_remote(ref)
    host, repo, tag = parsed.registry, parsed.repository, parsed.tag
    if "@" in ref or not repo or not tag or not oci_ref.is_registry_host(host):
        raise UserError(f"{ref!r} is neither a bundle file nor HOST:PORT/REPOSITORY:TAG", field="BUNDLE|REF",
                        hint="pass the .tar from `packager bundle`, or the imported image by tag")
    with tempfile.TemporaryDirectory(prefix="packager-verify-") as tmp:
        lay = L.Layout(Path(tmp) / "layout").init()
        rep = Report()
        if not _copy(lay, f"{host}/{repo}:{tag}", "image", rep):
            return rep
        _copy(lay, f"{host}/{repo}:{tag}-signatures", "signatures", rep)
        _copy(lay, f"{host}/{repo}:{tag}-plan", "plan", rep)
        _copy(lay, f"{host}/{repo}:{tag}-sbom", "sbom", rep)
        sigs = lay.entries().get("signatures")
        ann = (lay.read_json(sigs.digest).get("annotations") or {}) if sigs else {}
        for role, key in (("weights", WEIGHTS_TARGET), ("chart", CHART_TARGET)):
            if ann.get(key):
                _copy(lay, f"{host}/{ann[key]}", role, rep)
        inner = verify_layout(lay, keys, Path(tmp))
        rep.checks.extend(inner.checks)
        rep.digests.update(inner.digests)
        return rep


def _copy(lay: L.Layout, ref: str, role: str, rep: Report) -> bool:
    if role != "image":  # artifacts: fetched as served, so a bad blob is named by its file, not refused
        from packager.supply.fetch import BadInput, fetch_artifact

        try:
            fetch_artifact(lay, ref, role)
            return True
        except BadInput as exc:
            return rep.add(False, role, str(exc))
    host = ref.split("/", 1)[0]
    proc = subprocess.run([sign.skopeo(), "copy", "--quiet", "--preserve-digests", "--remove-signatures", *sign.tls_flags(host, "--src-tls-verify"),
                           f"docker://{ref}", f"oci:{lay.root}:{role}"], capture_output=True, text=True)
    if proc.returncode != 0:
        return rep.add(False, role, f"cannot read {ref}: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode}")
    entry = next(m for m in lay.index()["manifests"] if m.get("annotations", {}).get(L.REF_NAME) == role)
    lay.name(role, entry, ref.split("/", 1)[1])
    return True
