"""Re-pack the installed packager distribution into a wheel, for an image built by a pip-installed packager.

There are no sources to build from (`pip wheel` needs them, and an sdist would need the network), but an
installed wheel is its files plus a RECORD that lists them: zipping those files back with their dist-info
gives the same wheel, byte-identical across runs (sorted entries, fixed timestamps). Files the installer
made (console scripts outside site-packages, INSTALLER, REQUESTED, direct_url.json, bytecode) are left out,
and RECORD is written afresh from the bytes packed, so a locally edited file is packed as it is now.
"""
from __future__ import annotations

import base64
import hashlib
import zipfile
from importlib import metadata
from pathlib import Path

from packager.errors import UserError

DIST = "packager"
_INSTALLER_FILES = {"INSTALLER", "REQUESTED", "direct_url.json", "RECORD"}
_EPOCH = (1980, 1, 1, 0, 0, 0)


def _digest(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def _packed_files(dist: metadata.Distribution) -> list[tuple[str, Path]]:
    out = []
    for f in dist.files or ():
        rel = str(f)
        parts = Path(rel).parts
        if rel.startswith("..") or "__pycache__" in parts or rel.endswith(".pyc"):
            continue
        if parts[0].endswith(".dist-info") and parts[-1] in _INSTALLER_FILES:
            continue
        out.append((rel, Path(dist.locate_file(f))))
    return sorted(out)


def repack_installed(dest: Path) -> Path:
    try:
        dist = metadata.distribution(DIST)
    except metadata.PackageNotFoundError:
        raise UserError("packager is not installed as a distribution and runs from no checkout",
                        hint="pip install the packager wheel, or run packager from a source checkout") from None
    files = _packed_files(dist)
    info = next((rel.split("/")[0] for rel, _ in files if rel.split("/")[0].endswith(".dist-info")), None)
    if not files or info is None:
        raise UserError(f"the installed {DIST} lists no files (no RECORD)", field="packager",
                        hint="reinstall packager from its wheel with pip")
    tag = next((line.split(":", 1)[1].strip() for line in (dist.read_text("WHEEL") or "").splitlines()
                if line.startswith("Tag:")), "py3-none-any")
    wheel = dest / f"{DIST}-{dist.version}-{tag}.whl"
    record = []
    with zipfile.ZipFile(wheel, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for rel, path in files:
            try:
                data = path.read_bytes()
            except OSError as exc:
                raise UserError(f"cannot read the installed file {rel}: {exc.strerror}", file=str(path),
                                hint="reinstall packager") from None
            zi = zipfile.ZipInfo(rel, date_time=_EPOCH)
            zi.external_attr = 0o644 << 16
            zi.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(zi, data)
            record.append(f"{rel},{_digest(data)},{len(data)}")
        record.append(f"{info}/RECORD,,")
        zi = zipfile.ZipInfo(f"{info}/RECORD", date_time=_EPOCH)
        zi.external_attr = 0o644 << 16
        zi.compress_type = zipfile.ZIP_DEFLATED
        zf.writestr(zi, "\n".join(record) + "\n")
    return wheel
