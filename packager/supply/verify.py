"""`packager verify BUNDLE --keys DIR`: the release statement first, then every part against it.

The statement (packager.supply.statement) is the only thing trusted, and only once its signature
verified with the public weights key: each part is then reached by the digest the statement gives
it, never by an index entry, ref name, annotation or title. Files are written only into the
caller's temp dir, under fixed names (blobs/sha256/<hex>, weights/<the signed file paths>,
chart/<the signed archive name>). Each check prints one line (ok / FAIL, what, why); a failure
names the part and, for the weights, the file. Exit codes (cli): 0 all pass, 1 a check failed,
2 bad input (a malformed index or manifest, named).
"""
from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from packager.supply import gpg, modelpack, oci_layout as L, sign, statement as S
from packager.supply.keys import CHART_PUB, IMAGE_PUB, MODEL_PUB, KeySet, load_keys
from runtimes.digests import oci_digest, oci_digest_file

SBOM_LABEL = "dev.packager.sbom"
WEIGHTS_LABEL = "dev.packager.weights.artifact"


@dataclass(frozen=True)
class Expect:
    """--expect-version / --expect-identity (None: any)."""
    version: str | None = None
    identity: str | None = None


@dataclass
class Report:
    checks: list[tuple[bool, str, str]] = field(default_factory=list)  # (ok, what, detail)
    digests: dict[str, str] = field(default_factory=dict)  # part -> manifest digest whose blobs all matched
    statement: S.Statement | None = None  # set once its signature verified
    layout: L.Layout | None = None

    def add(self, ok: bool, what: str, detail: str) -> bool:
        self.checks.append((ok, what, detail))
        return ok

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(ok for ok, _, _ in self.checks) and self.statement is not None

    def failures(self) -> list[str]:
        return [f"{what}: {detail}" for ok, what, detail in self.checks if not ok]

    def lines(self) -> list[str]:
        return [f"{'ok  ' if ok else 'FAIL'}  {what:<28} {detail}" for ok, what, detail in self.checks]

    def blob(self, name: str) -> Path:
        """A verified part's file (a statement subject), in the layout that was checked."""
        return self.layout.blob_path(self.statement.digests[name])


def verify_bundle(bundle: Path, keys_dir: Path, expect: Expect = Expect()) -> Report:
    keys = load_keys(keys_dir, private=False)
    with tempfile.TemporaryDirectory(prefix="packager-verify-") as tmp:
        lay = L.unpack(Path(bundle), Path(tmp) / "layout")
        return verify_layout(lay, keys, Path(tmp), expect)


def verify_layout(lay: L.Layout, keys: KeySet, tmp: Path, expect: Expect = Expect()) -> Report:
    """The statement named `release` in index.json, then every part it names, from `lay`."""
    rep = Report(layout=lay)
    entry = lay.checked_index().get(S.REF)
    if entry is None:
        rep.add(False, "release statement", f"the bundle's index names no {S.REF!r} entry: an unsigned or "
                "pre-statement bundle")
        return rep
    envelope = statement_envelope(lay, entry["digest"], rep)
    if envelope is not None and check_statement(envelope, keys, expect, rep):
        check_parts(lay, keys, tmp, rep)
    return rep


def statement_envelope(lay: L.Layout, manifest_digest: str, rep: Report) -> bytes | None:
    """The DSSE envelope blob of the statement artifact (its wrapper manifest is not signed: shape only)."""
    raw = lay.read_blob(manifest_digest, "release statement manifest")
    if raw is None or oci_digest(raw) != manifest_digest:
        rep.add(False, "release statement", f"manifest {manifest_digest} missing or altered")
        return None
    layers = [ly for ly in L.parse_manifest(raw, "release statement")["layers"] if ly["mediaType"] == S.ENVELOPE_TYPE]
    if len(layers) != 1:
        raise L.Malformed("release statement manifest", f"{len(layers)} layers of type {S.ENVELOPE_TYPE}, not one")
    data = lay.read_blob(layers[0]["digest"], "release statement", S.MAX_ENVELOPE)
    if data is None or oci_digest(data) != layers[0]["digest"]:
        rep.add(False, "release statement", f"envelope {layers[0]['digest']} missing or altered")
        return None
    return data


def check_statement(envelope: bytes, keys: KeySet, expect: Expect, rep: Report) -> S.Statement | None:
    try:
        st = S.open_envelope(envelope, keys.path(MODEL_PUB))
        rep.add(True, "release statement", f"{st.identity}:{st.version} ({len(st.digests)} subjects), signed by "
                f"{MODEL_PUB} {keys.model[:19]}...")
        S.check_expected(st, expect.version, expect.identity)
    except S.Refused as exc:
        rep.add(False, "release statement", str(exc))
        return None
    rep.statement = st
    return st


def check_parts(lay: L.Layout, keys: KeySet, tmp: Path, rep: Report) -> None:
    st = rep.statement
    manifests = {part: check_part(lay, part, st.digests[part], rep) for part in S.PARTS}
    blobs = {**S.BLOBS, **{n: "signatures" for n in st.digests if S.IMAGE_SIGNATURE.fullmatch(n)}}
    for name, part in blobs.items():
        if manifests[part] is not None and st.digests[name] not in {ly["digest"] for ly in manifests[part]["layers"]}:
            manifests[part] = None
            rep.add(False, name, f"{st.digests[name]} is not a layer of the {part} manifest")
    if manifests["weights"] and manifests["signatures"]:
        check_weights(lay, manifests["weights"], keys, tmp, rep)
    if manifests["image"] and manifests["signatures"]:
        check_image(lay, keys, rep)
    if manifests["chart"]:
        check_chart(lay, keys, tmp, rep)
    if manifests["image"] and manifests["sbom"]:
        check_labels(lay, manifests["image"], rep)
    if manifests["plan"]:
        check_plan(rep)


def check_part(lay: L.Layout, part: str, digest: str, rep: Report) -> dict | None:
    """The manifest the statement names, and every blob it names: present, the right size, the right sha256."""
    raw = lay.read_blob(digest, part)
    if raw is None:
        rep.add(False, f"{part} manifest", f"{digest} (the statement's) is missing")
        return None
    manifest = L.parse_manifest(raw, part)  # shape first, so a malformed one is named as such (exit 2)
    if oci_digest(raw) != digest:  # ... but nothing in it is used unless it is the signed one
        rep.add(False, f"{part} manifest", f"altered: its bytes hash to {oci_digest(raw)}, the statement names {digest}")
        return None
    blobs = [("config", manifest["config"])]
    blobs += [(ly.get("annotations", {}).get(modelpack.FILEPATH) or ly.get("annotations", {}).get(L.TITLE)
               or f"layer {i}", ly) for i, ly in enumerate(manifest["layers"])]
    ok = True
    for name, desc in blobs:
        path = lay.blob_path(desc["digest"])
        if not path.is_file():
            ok = rep.add(False, f"{part} {name}", f"blob {desc['digest']} missing")
        elif path.stat().st_size != desc["size"] or oci_digest_file(path) != desc["digest"]:
            ok = rep.add(False, f"{part} {name}",
                         f"altered: its bytes hash to {oci_digest_file(path)}, the manifest names {desc['digest']}")
    if not ok:
        return None
    rep.digests[part] = digest
    rep.add(True, f"{part} digests", f"manifest {digest[:19]}... and {len(blobs)} blob(s) match the statement")
    return manifest


def check_weights(lay: L.Layout, manifest: dict, keys: KeySet, tmp: Path, rep: Report) -> None:
    """model-signing over the artifact's files, rebuilt at their (signed) file paths from the blobs."""
    if manifest.get("artifactType") != modelpack.ARTIFACT_TYPE:
        rep.add(False, "weights artifact", f"artifactType {manifest.get('artifactType')!r} is not ModelPack's")
        return
    files = [(lay.blob_path(ly["digest"]), ly.get("annotations", {}).get(modelpack.FILEPATH, ""))
             for ly in manifest["layers"]]
    if not files or not all(rel for _, rel in files):
        rep.add(False, "weights artifact", f"a layer without its {modelpack.FILEPATH}")
        return
    try:
        root = sign.model_dir(files, tmp / "weights")
        sign.verify_weights(root, rep.blob("signatures/weights"), keys.path(MODEL_PUB))
    except Exception as exc:  # model-signing raises ValueError with the file it disagrees on
        rep.add(False, "weights signature", f"model-signing: {exc}")
        return
    rep.add(True, "weights signature", f"model-signing, key {keys.model[:19]}...: {', '.join(r for _, r in files)}")
    check_adapters(manifest, rep)


def check_adapters(manifest: dict, rep: Report) -> None:
    """Each LoRA adapter the statement lists: its files are layers of the signed weights artifact at the
    digests it gives (model-signing above covered their bytes)."""
    layers = {ly.get("annotations", {}).get(modelpack.FILEPATH): ly["digest"] for ly in manifest["layers"]}
    for a in rep.statement.model.get("adapters") or []:
        files = a.get("sha256") or {}
        bad = sorted(f for f, d in files.items() if layers.get(f"{a.get('dir')}/{f}") != f"sha256:{d}")
        rep.add(bool(files) and not bad, f"adapter {a.get('name')}",
                f"files not in the weights artifact at the signed digests: {', '.join(bad)}" if bad or not files
                else f"{', '.join(sorted(files))} in the weights artifact, signed")


def check_image(lay: L.Layout, keys: KeySet, rep: Report) -> None:
    st = rep.statement
    ok, why = standalone_verify(rep.blob("image"), st.signed_identity, [lay.blob_path(d) for d in st.image_signatures],
                                keys)
    rep.add(ok, "image signature", why)


def standalone_verify(manifest: Path, identity: str, signatures: list[Path], keys: KeySet) -> tuple[bool, str]:
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


def check_chart(lay: L.Layout, keys: KeySet, tmp: Path, rep: Report) -> None:
    """Helm provenance. Helm finds the archive's sum in the .prov by file name: the signed one, in tmp/chart/."""
    d = tmp / "chart"
    d.mkdir(exist_ok=True)
    archive, prov = d / rep.statement.chart_archive, d / (rep.statement.chart_archive + ".prov")
    archive.write_bytes(rep.blob("chart/archive").read_bytes())
    prov.write_bytes(rep.blob("chart/provenance").read_bytes())
    try:
        who = sign.verify_chart(archive, prov, keys.path(CHART_PUB))
    except ValueError as exc:
        rep.add(False, "chart signature", f"Helm provenance: {exc}")
        return
    rep.add(True, "chart signature", f"Helm provenance of {archive.name} signed by {who}")


def check_labels(lay: L.Layout, image: dict, rep: Report) -> None:
    """The image names its SBOM (and, under --weights oci, its weights artifact) by digest."""
    config = L.parse_json(lay.read_blob(image["config"]["digest"], "image config") or b"", "image config")
    inner = config.get("config") if isinstance(config.get("config"), dict) else {}
    labels = inner.get("Labels") if isinstance(inner.get("Labels"), dict) else {}
    got = rep.statement.digests["sbom/sbom.cdx.json"]
    want = labels.get(SBOM_LABEL)
    if want:
        rep.add(want == got, "sbom", f"image label {SBOM_LABEL}={want}" + ("" if want == got else f", the statement has {got}"))
    else:
        rep.add(True, "sbom", f"{got} attached (this image carries no {SBOM_LABEL} label)")
    want = labels.get(WEIGHTS_LABEL)
    got = rep.statement.digests["weights"]
    if want:
        rep.add(str(want).endswith(got), "weights binding", f"image label {WEIGHTS_LABEL}={want}"
                + ("" if str(want).endswith(got) else f", the statement has {got}"))


def check_plan(rep: Report) -> None:
    try:
        plan = L.json_value(rep.blob("plan/plan.json").read_bytes())
        model, selected = (plan.get("model"), plan.get("selected") or {}) if isinstance(plan, dict) else (None, None)
        if not isinstance(model, dict) or not isinstance(model.get("name"), str) or not isinstance(selected, dict):
            raise ValueError("no model.name, or selected is not an object")
        name, profile = model["name"], selected.get("name")
    except (ValueError, UnicodeDecodeError) as exc:
        rep.add(False, "plan", f"plan.json does not read as a plan ({exc})")
        return
    want = rep.statement.model.get("name")
    rep.add(name == want, "plan", f"model {name}, profile {profile}" + ("" if name == want else f"; the statement names {want}"))


def verify_source(source: str, keys_dir: Path, expect: Expect = Expect()) -> Report:
    """A bundle file, or an imported release by reference (HOST:PORT/REPO:TAG)."""
    if Path(source).is_file() or source.endswith(".tar"):
        return verify_bundle(Path(source), keys_dir, expect)
    from packager.supply.fetch import verify_ref

    keys = load_keys(keys_dir, private=False)
    with tempfile.TemporaryDirectory(prefix="packager-verify-") as tmp:
        return verify_ref(source, keys, Path(tmp), expect)
