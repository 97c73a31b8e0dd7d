"""Signing, offline, with the real tools: model-signing (weights), skopeo simple signing
(image, GPG), Helm provenance (chart). Every signer reads a private key file from the keys
directory and nothing else; the keys never travel with what they sign.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from packager.errors import UserError
from packager.supply import gpg
from packager.supply.keys import CHART_KEY, CHART_UID, IMAGE_KEY, MODEL_KEY, KeySet


def model_dir(files: list[tuple[Path, str]], dest: Path) -> Path:
    """`dest` holding each (file, rel) at rel: hard links, so gigabytes cost nothing."""
    dest.mkdir(parents=True, exist_ok=True)
    for src, rel in files:
        target = dest / rel
        if not target.resolve().is_relative_to(dest.resolve()):
            raise UserError(f"weights file path {rel!r} leaves the model directory", field="org.cncf.model.filepath")
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src, target)
        except OSError:
            shutil.copyfile(src, target)
    return dest


def sign_weights(files: list[tuple[Path, str]], keys: KeySet, signature: Path) -> Path:
    """OpenSSF model-signing (key-based, no network) over exactly the artifact's files."""
    from model_signing import signing

    with tempfile.TemporaryDirectory(prefix="packager-msign-") as tmp:
        root = model_dir(files, Path(tmp) / "model")
        signing.Config().use_elliptic_key_signer(private_key=keys.path(MODEL_KEY)).sign(root, signature)
    return signature


def verify_weights(root: Path, signature: Path, public_key: Path) -> None:
    """Raises ValueError (model-signing's own message) when a file, a name or the key differs."""
    from model_signing import verifying

    verifying.Config().use_elliptic_key_verifier(public_key=public_key).verify(root, signature)


def skopeo() -> str:
    path = shutil.which("skopeo")
    if not path:
        raise UserError("skopeo is not installed", hint="apt-get install skopeo (CI: bash .ci/supply_chain.sh)")
    return path


def registries_d(directory: Path, lookaside: Path) -> Path:
    """A registries.d telling containers/image to keep simple signatures as files under `lookaside`."""
    directory.mkdir(parents=True, exist_ok=True)
    url = lookaside.resolve().as_uri()
    (directory / "packager.yaml").write_text(f"default-docker:\n  lookaside: {url}\n  lookaside-staging: {url}\n")
    return directory


def tls_flags(host: str, flag: str) -> list[str]:
    from runtimes.oci_ref import is_loopback

    return [f"{flag}=false"] if is_loopback(host) else []


def sign_image(ref: str, keys: KeySet, lookaside: Path) -> None:
    """`skopeo copy --format oci --sign-by` of the pushed image onto itself; the signature lands in
    `lookaside` (DIR/<repo>@sha256=<digest>/signature-1).

    OCI format: skopeo 1.9 writes a Docker schema-2 manifest into an OCI layout but cannot read it
    back, so the image is converted once, in the registry (same blobs, a new manifest), and the OCI
    manifest is what gets signed, bundled and imported."""
    host = ref.split("/", 1)[0]
    lookaside.mkdir(parents=True, exist_ok=True)
    with gpg.temp_home() as home, tempfile.TemporaryDirectory(prefix="packager-regd-") as regd:
        gpg.import_keys(home, keys.path(IMAGE_KEY))
        argv = [skopeo(), "copy", "--quiet", "--format", "oci", "--registries.d", str(registries_d(Path(regd), lookaside)),
                *tls_flags(host, "--src-tls-verify"), *tls_flags(host, "--dest-tls-verify"),
                "--sign-by", keys.image, f"docker://{ref}", f"docker://{ref}"]
        proc = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, "GNUPGHOME": str(home)})
    if proc.returncode != 0:
        raise UserError(f"signing {ref} failed: {proc.stderr.strip()[-600:]}", field="image")


def sign_chart(archive: Path, keys: KeySet) -> Path:
    """Helm provenance (`helm package --sign`'s .prov) through the Helm SDK."""
    import helm_python as helm

    try:
        return Path(helm.sign(str(archive), key=CHART_UID, keyring=str(keys.path(CHART_KEY))))
    except helm.HelmError as exc:
        raise UserError(f"signing the chart {archive.name} failed: {exc}", field="--keys") from None


def verify_chart(archive: Path, provenance: Path, public_keyring: Path) -> str:
    """The signer's identity; ValueError when the archive or its provenance does not verify."""
    import helm_python as helm

    try:
        result = helm.verify(str(archive), str(public_keyring), provenance_file=str(provenance))
    except helm.HelmError as exc:
        raise ValueError(str(exc)) from None
    return ", ".join(result.get("signed_by") or [])
