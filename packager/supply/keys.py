"""`packager keys init`: the three signing key pairs of a release, and reading them back.

  model-signing.key / .pub   EC P-256 (PKCS#8 / SPKI PEM): OpenSSF model-signing over the weights
  image-signing.key / .pub   OpenPGP RSA-3072: containers' simple signing (skopeo --sign-by)
  chart-signing.key / .pub   OpenPGP RSA-3072 keyrings: Helm provenance (.prov)
  keys.json                  fingerprints and file names (public)

Private parts are written 0600 into a 0700 directory and are read only to sign; `verify`
needs the .pub files alone. Nothing here ever logs key material.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from packager.errors import UserError
from packager.supply import gpg
from runtimes.digests import oci_digest

MODEL_KEY, MODEL_PUB = "model-signing.key", "model-signing.pub"
IMAGE_KEY, IMAGE_PUB = "image-signing.key", "image-signing.pub"
CHART_KEY, CHART_PUB = "chart-signing.key", "chart-signing.pub"
INDEX = "keys.json"
PRIVATE = (MODEL_KEY, IMAGE_KEY, CHART_KEY)
PUBLIC = (MODEL_PUB, IMAGE_PUB, CHART_PUB)
IMAGE_UID = "packager image signing <image-signing@packager.invalid>"
CHART_UID = "packager chart signing <chart-signing@packager.invalid>"


@dataclass(frozen=True)
class KeySet:
    directory: Path
    model: str  # sha256 of the EC public key (SPKI DER)
    image: str  # OpenPGP fingerprint
    chart: str  # OpenPGP fingerprint

    def path(self, name: str) -> Path:
        return self.directory / name

    def has_private(self) -> bool:
        return all(self.path(n).is_file() for n in PRIVATE)


def _write(path: Path, data: bytes, mode: int) -> None:
    # O_EXCL + mode at creation: a private key is never readable by others, not even for an instant.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _ec_pair() -> tuple[bytes, bytes]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, public


def ec_fingerprint(public_pem: bytes) -> str:
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_public_key(public_pem)
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return oci_digest(der)


def _gpg_pair(uid: str, armor: bool) -> tuple[bytes, bytes, str]:
    with gpg.temp_home() as home:
        fpr = gpg.generate(home, uid)
        flag = ("--armor",) if armor else ()
        secret = gpg.run(home, "--pinentry-mode", "loopback", "--passphrase", "", *flag,
                         "--export-secret-keys", fpr)
        public = gpg.run(home, *flag, "--export", fpr)
    return secret, public, fpr


def init_keys(out: Path) -> KeySet:
    """Generate every pair into `out`; refuses when any key file is already there."""
    out = Path(out)
    taken = [n for n in (*PRIVATE, *PUBLIC, INDEX) if (out / n).exists()]
    if taken:
        raise UserError(f"{out} already holds {', '.join(taken)}; refusing to overwrite keys", field="--out",
                        hint="choose an empty directory, or move the old keys away yourself")
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} is not a directory", field="--out")
    out.mkdir(parents=True, exist_ok=True, mode=0o700)
    # Generate everything first, write after: a failure leaves no half-made key set.
    model_key, model_pub = _ec_pair()
    image_key, image_pub, image_fpr = _gpg_pair(IMAGE_UID, armor=True)
    # Helm reads binary keyrings (a secring for sign, a pubring for verify).
    chart_key, chart_pub, chart_fpr = _gpg_pair(CHART_UID, armor=False)
    keys = KeySet(out, ec_fingerprint(model_pub), image_fpr, chart_fpr)
    for name, data in ((MODEL_KEY, model_key), (IMAGE_KEY, image_key), (CHART_KEY, chart_key)):
        _write(out / name, data, 0o600)
    for name, data in ((MODEL_PUB, model_pub), (IMAGE_PUB, image_pub), (CHART_PUB, chart_pub)):
        _write(out / name, data, 0o644)
    index = {"model_signing": {"public": MODEL_PUB, "fingerprint": keys.model, "type": "ecdsa-p256"},
             "image_signing": {"public": IMAGE_PUB, "fingerprint": keys.image, "type": "openpgp-rsa3072"},
             "chart_signing": {"public": CHART_PUB, "fingerprint": keys.chart, "type": "openpgp-rsa3072"}}
    _write(out / INDEX, (json.dumps(index, indent=2) + "\n").encode(), 0o644)
    return keys


def load_keys(directory: Path, *, private: bool) -> KeySet:
    """The key set in `directory`; `private` demands the signing halves too."""
    directory = Path(directory)
    need = PUBLIC + (PRIVATE if private else ())
    missing = [n for n in need if not (directory / n).is_file()]
    if missing:
        raise UserError(f"{directory} lacks {', '.join(missing)}", field="--keys",
                        hint="make keys with `packager keys init --out DIR`" if private
                        else "pass the directory holding the .pub files that `packager keys init` wrote")
    for name in PRIVATE if private else ():
        if (directory / name).stat().st_mode & 0o077:
            raise UserError(f"{directory / name} is readable by group or others", field="--keys",
                            hint=f"chmod 600 {directory / name}")
    try:
        index = json.loads((directory / INDEX).read_text()) if (directory / INDEX).is_file() else {}
        model = ec_fingerprint((directory / MODEL_PUB).read_bytes())
        if not isinstance(index, dict):
            raise ValueError(f"{INDEX} is not a JSON object")
    except ValueError as exc:  # json.JSONDecodeError is a ValueError; so is a key that is not PEM
        raise UserError(f"{directory}: the keys do not read: {exc}", field="--keys",
                        hint="restore the files `packager keys init` wrote, or make new keys") from None
    return KeySet(directory, model, (index.get("image_signing") or {}).get("fingerprint", ""),
                  (index.get("chart_signing") or {}).get("fingerprint", ""))
