"""`packager import BUNDLE --registry HOST:PORT`: every part of a bundle into a registry, digests unchanged.

skopeo copies each index entry (image, weights artifact, chart, plan, SBOM, signatures) from
the layout with --preserve-digests; each pushed manifest's digest is then read back and
compared. The image's simple signatures are written as lookaside files beside a policy.json
and a registries.d entry that make podman, skopeo and CRI-O demand them for this registry.
"""
from __future__ import annotations

import json
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from packager.errors import UserError
from packager.supply import oci_layout as L, registry, sign
from packager.supply.bundle import IDENTITY, LOOKASIDE_PATH, SIMPLE_SIG_TYPE
from packager.supply.keys import IMAGE_PUB
from runtimes.oci_ref import parse_remote


@dataclass(frozen=True)
class Imported:
    refs: dict[str, str]  # role -> host/repo@sha256:...
    signatures_dir: Path | None  # lookaside files, policy.json, registries.d/


def import_bundle(bundle: Path, target: str, signatures_dir: Path | None = None, keys_dir: Path | None = None,
                  log=print) -> Imported:
    from packager.publish import parse_registry

    reg = parse_registry(target)
    with tempfile.TemporaryDirectory(prefix="packager-import-") as tmp:
        lay = L.unpack(Path(bundle), Path(tmp) / "layout")
        entries = lay.entries()
        if "image" not in entries:
            raise UserError(f"{bundle} names no image in its index", field="BUNDLE")
        refs = {}
        for role, entry in sorted(entries.items(), key=lambda kv: kv[0] != "weights"):  # the big part first
            if not entry.target:
                raise UserError(f"index entry {role!r} has no {L.TARGET} annotation", field="index.json")
            dest = "/".join(p for p in (reg.host, reg.path, entry.target) if p)
            proc = subprocess.run([sign.skopeo(), "copy", "--quiet", "--preserve-digests", "--remove-signatures",
                                   *sign.tls_flags(reg.host, "--dest-tls-verify"),
                                   f"oci:{lay.root}:{role}", f"docker://{dest}"], capture_output=True, text=True)
            if proc.returncode != 0:
                raise UserError(f"importing {role} into {dest} failed: {proc.stderr.strip()[-600:]}", field="--registry",
                                hint="is the registry running and writable?")
            landed = parse_remote(dest)
            _, digest = registry.get_manifest(reg.host, landed.repository, landed.tag, insecure=reg.insecure)
            if digest != entry.digest:
                raise UserError(f"{dest} landed as {digest}, the bundle has {entry.digest}", field="--registry")
            refs[role] = f"{dest.rpartition(':')[0]}@{digest}"
            log(f"imported: {role:<10} {dest} ({digest})")
        sigdir = write_signatures(lay, entries, reg.host, signatures_dir) if signatures_dir else None
        if sigdir and keys_dir:
            (sigdir / IMAGE_PUB).write_bytes((Path(keys_dir) / IMAGE_PUB).read_bytes())
    return Imported(refs, sigdir)


def write_signatures(lay: L.Layout, entries: dict, host: str, dest: Path) -> Path:
    """DEST/lookaside/... (the signature files), DEST/registries.d/, DEST/policy.json for `host`.

    The policy remaps the signed identity (the build registry's name) onto `host`, so a pull of
    the imported image is accepted only with a valid signature by the image key.
    """
    dest = Path(dest)
    lookaside = dest / "lookaside"
    sigs = lay.read_json(entries["signatures"].digest) if "signatures" in entries else {"layers": []}
    signed = ""
    for ly in sigs.get("layers", []):
        if ly["mediaType"] != SIMPLE_SIG_TYPE:
            continue
        rel = ly["annotations"][LOOKASIDE_PATH]
        target = lookaside / rel
        if not target.resolve().is_relative_to(lookaside.resolve()):
            raise UserError(f"signature path {rel!r} leaves the lookaside directory", field=LOOKASIDE_PATH)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(lay.blob_path(ly["digest"]).read_bytes())
        signed = ly["annotations"].get(IDENTITY, signed)
    regd = dest / "registries.d"
    regd.mkdir(parents=True, exist_ok=True)
    (regd / "packager.yaml").write_text(f"docker:\n  {host}:\n    lookaside: {lookaside.resolve().as_uri()}\n")
    image_repo = entries["image"].target.rsplit(":", 1)[0]
    signed_repo = signed.rsplit(":", 1)[0] if signed else f"{host}/{image_repo}"
    requirement = {"type": "signedBy", "keyType": "GPGKeys", "keyPath": str((dest / IMAGE_PUB).resolve()),
                   "signedIdentity": {"type": "remapIdentity", "prefix": f"{host}/{image_repo}",
                                      "signedPrefix": signed_repo}}
    policy = {"default": [{"type": "reject"}],
              "transports": {"docker": {f"{host}/{image_repo}": [requirement]},
                             # local copies made after the check (skopeo to dir:/oci:) are not images pulled
                             "dir": {"": [{"type": "insecureAcceptAnything"}]},
                             "oci": {"": [{"type": "insecureAcceptAnything"}]}}}
    (dest / "policy.json").write_text(json.dumps(policy, indent=2) + "\n")
    return dest
