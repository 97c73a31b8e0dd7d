"""sha256 of files and bytes, bare or as OCI digests: the one digest helper for package time and start time."""
from __future__ import annotations

import hashlib
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def sha256_file(path: str | Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def oci_digest(data: bytes) -> str:
    """The OCI digest of some bytes: `sha256:<hex>`, as manifests and registries name blobs."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def oci_digest_file(path: str | Path) -> str:
    """The OCI digest of a file, read in chunks."""
    return "sha256:" + sha256_file(path)


def verify_digests(directory: Path, expected: dict[str, str]) -> None:
    """Raise ValueError naming every file whose digest differs or is missing.
    File names are relative to `directory` (absolute paths allowed)."""
    errors = []
    for name, want in expected.items():
        path = Path(name) if Path(name).is_absolute() else Path(directory) / name
        if not path.is_file():
            errors.append(f"{name}: file not found under {directory}")
            continue
        got = sha256_file(path)
        if got.lower() != want.lower():
            errors.append(f"{name}: sha256 {got} != expected {want.lower()}")
        else:
            log.info("sha256 ok: %s", name)
    if errors:
        raise ValueError("model file digests do not match: " + "; ".join(errors))
