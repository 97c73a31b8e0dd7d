"""`packager import BUNDLE --registry HOST:PORT[/PREFIX] --keys DIR`: a verified release into a registry.

The bundle is unpacked once and that layout is verified (packager.supply.verify: the statement,
then every part against it); a bundle that fails pushes nothing. The index it came with is then
replaced by one made from the statement, so skopeo copies exactly the verified manifests, each to
PREFIX/IDENTITY:TAG named by the statement (packager.supply.statement.Statement.targets), with
--preserve-digests; each pushed manifest's digest is read back and compared. The image's simple
signatures become lookaside files beside a policy.json and a registries.d entry, every name in
them made from signed content, so podman, skopeo and CRI-O demand them for this repository.
"""
from __future__ import annotations

import json
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from packager.errors import UserError
from packager.supply import oci_layout as L, registry, sign, statement as S
from packager.supply.keys import IMAGE_PUB, load_keys
from packager.supply.verify import Expect, Report, verify_layout


@dataclass(frozen=True)
class Imported:
    refs: dict[str, str]  # part -> host/prefix/identity@sha256:...
    signatures_dir: Path  # lookaside files, policy.json, registries.d/


class NotImported(Exception):
    """The bundle did not verify: nothing was pushed (exit 1)."""

    def __init__(self, report: Report) -> None:
        super().__init__("; ".join(report.failures()) or "no release statement verified")
        self.report = report


def site_registry(target: str):
    from packager.publish import parse_registry

    reg = parse_registry(target)
    if reg.path and not S.REPOSITORY.fullmatch(reg.path):
        raise UserError(f"{reg.path!r} is not a repository prefix", field="--registry",
                        hint="HOST:PORT, or HOST:PORT/PREFIX with lower-case path components, e.g. 127.0.0.1:5000/site")
    return reg


def import_bundle(bundle: Path, target: str, keys_dir: Path, signatures_dir: Path, expect: Expect = Expect(),
                  log=print) -> Imported:
    keys = load_keys(keys_dir, private=False)
    reg = site_registry(target)
    with tempfile.TemporaryDirectory(prefix="packager-import-") as tmp:
        lay = L.unpack(Path(bundle), Path(tmp) / "layout")
        report = verify_layout(lay, keys, Path(tmp), expect)
        if not report.ok:
            raise NotImported(report)
        st = report.statement
        log(f"verified: {st.identity}:{st.version} ({len(report.checks)} checks)")
        digests = index_from_statement(lay, st)
        refs = {}
        for part, dest in sorted(st.targets(reg.path).items(), key=lambda kv: kv[0] != "weights"):  # big part first
            refs[part] = push(lay, part, f"{reg.host}/{dest}", digests[part], reg)
            log(f"imported: {part:<10} {reg.host}/{dest} ({refs[part].rsplit('@', 1)[1]})")
        sigdir = write_signatures(report, reg.host, "/".join(p for p in (reg.path, st.identity) if p), signatures_dir)
        (sigdir / IMAGE_PUB).write_bytes(keys.path(IMAGE_PUB).read_bytes())
    return Imported(refs, sigdir)


def index_from_statement(lay: L.Layout, st: S.Statement) -> dict[str, str]:
    """index.json naming exactly the verified manifests by the statement's digests (the bundle's own
    index, its ref names and annotations, are dropped); the statement's wrapper keeps its digest.
    Returns part -> the digest it must land as."""
    digests = {**{part: st.digests[part] for part in S.PARTS}, S.REF: lay.checked_index()[S.REF]["digest"]}
    manifests = [{"mediaType": L.MANIFEST_TYPE, "digest": d, "size": lay.blob_path(d).stat().st_size,
                  "annotations": {L.REF_NAME: part}} for part, d in digests.items()]
    lay.write_index({"schemaVersion": 2, "mediaType": L.INDEX_TYPE, "manifests": manifests})
    return digests


def push(lay: L.Layout, part: str, dest: str, digest: str, reg) -> str:
    from runtimes.oci_ref import parse_remote

    proc = subprocess.run([sign.skopeo(), "copy", "--quiet", "--preserve-digests", "--remove-signatures",
                           *sign.tls_flags(reg.host, "--dest-tls-verify"), f"oci:{lay.root}:{part}", f"docker://{dest}"],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise UserError(f"importing {part} into {dest} failed: {proc.stderr.strip()[-600:]}", field="--registry",
                        hint="is the registry running and writable?")
    landed = parse_remote(dest)
    _, got = registry.get_manifest(reg.host, landed.repository, landed.tag, insecure=reg.insecure)
    if got != digest:
        raise UserError(f"{dest} landed as {got}, the bundle has {digest}", field="--registry")
    return f"{reg.host}/{landed.repository}@{got}"


def write_signatures(report: Report, host: str, repo: str, dest: Path) -> Path:
    """DEST/lookaside/<repo>@sha256=<hex>/signature-N, DEST/registries.d/, DEST/policy.json for host/repo.

    The policy remaps the signed identity (the build registry's name, from the statement) onto
    host/repo, so a pull of the imported image is accepted only with a valid signature by the image key.
    """
    st = report.statement
    dest = Path(dest)
    image_dir = dest / "lookaside" / f"{repo}@sha256={st.digests['image'].removeprefix('sha256:')}"
    image_dir.mkdir(parents=True, exist_ok=True)
    for n, digest in enumerate(st.image_signatures, 1):
        (image_dir / f"signature-{n}").write_bytes(report.layout.blob_path(digest).read_bytes())
    regd = dest / "registries.d"
    regd.mkdir(parents=True, exist_ok=True)
    (regd / "packager.yaml").write_text(f"docker:\n  {host}:\n    lookaside: {(dest / 'lookaside').resolve().as_uri()}\n")
    signed_repo = st.signed_identity.removesuffix(f":{st.version}")
    requirement = {"type": "signedBy", "keyType": "GPGKeys", "keyPath": str((dest / IMAGE_PUB).resolve()),
                   "signedIdentity": {"type": "remapIdentity", "prefix": f"{host}/{repo}", "signedPrefix": signed_repo}}
    policy = {"default": [{"type": "reject"}],
              "transports": {"docker": {f"{host}/{repo}": [requirement]},
                             # local copies made after the check (skopeo to dir:/oci:) are not images pulled
                             "dir": {"": [{"type": "insecureAcceptAnything"}]},
                             "oci": {"": [{"type": "insecureAcceptAnything"}]}}}
    (dest / "policy.json").write_text(json.dumps(policy, indent=2) + "\n")
    return dest
