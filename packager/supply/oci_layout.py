"""An OCI image layout on disk (oci-layout, index.json, blobs/sha256/...): write and read.

skopeo copies the image and the weights artifact into it; the small artifacts (chart, plan,
SBOM, signatures) are written here directly as OCI artifact manifests.
"""
from __future__ import annotations

import json
import os
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path

from packager.errors import UserError
from runtimes.digests import oci_digest, oci_digest_file

INDEX_TYPE = "application/vnd.oci.image.index.v1+json"
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
EMPTY_TYPE = "application/vnd.oci.empty.v1+json"
REF_NAME = "org.opencontainers.image.ref.name"
TITLE = "org.opencontainers.image.title"
ROLE = "dev.packager.role"
TARGET = "dev.packager.target"  # repository:tag relative to the registry `packager import` restores into


@dataclass(frozen=True)
class Entry:
    role: str
    descriptor: dict  # the index.json descriptor (digest, size, mediaType, annotations)

    @property
    def digest(self) -> str:
        return self.descriptor["digest"]

    @property
    def target(self) -> str:
        return self.descriptor.get("annotations", {}).get(TARGET, "")


class Layout:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def init(self) -> "Layout":
        (self.root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        (self.root / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
        if not (self.root / "index.json").exists():
            self.write_index({"schemaVersion": 2, "mediaType": INDEX_TYPE, "manifests": []})
        return self

    def blob_path(self, digest: str) -> Path:
        algo, _, hexdigest = digest.partition(":")
        if algo != "sha256" or len(hexdigest) != 64 or not all(c in "0123456789abcdef" for c in hexdigest):
            raise ValueError(f"not a sha256 digest: {digest!r}")
        return self.root / "blobs" / "sha256" / hexdigest

    def add_bytes(self, data: bytes, media_type: str, annotations: dict | None = None) -> dict:
        digest = oci_digest(data)
        path = self.blob_path(digest)
        if not path.exists():
            path.write_bytes(data)
        desc = {"mediaType": media_type, "digest": digest, "size": len(data)}
        return {**desc, "annotations": annotations} if annotations else desc

    def add_file(self, src: Path, media_type: str, annotations: dict | None = None) -> dict:
        digest = oci_digest_file(src)
        path = self.blob_path(digest)
        if not path.exists():
            try:
                os.link(src, path)
            except OSError:
                shutil.copyfile(src, path)
        desc = {"mediaType": media_type, "digest": digest, "size": src.stat().st_size}
        return {**desc, "annotations": annotations} if annotations else desc

    def add_artifact(self, role: str, target: str, artifact_type: str, layers: list[dict],
                     config: dict | None = None, annotations: dict | None = None) -> Entry:
        """An OCI artifact manifest over blobs already added; named `role` in the index."""
        config = config or self.add_bytes(b"{}", EMPTY_TYPE)
        manifest = {"schemaVersion": 2, "mediaType": MANIFEST_TYPE, "artifactType": artifact_type,
                    "config": config, "layers": layers}
        if annotations:
            manifest["annotations"] = annotations
        desc = self.add_bytes(json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode(), MANIFEST_TYPE)
        desc["artifactType"] = artifact_type
        return self.name(role, desc, target)

    def name(self, role: str, desc: dict, target: str, extra: dict | None = None) -> Entry:
        """Give the index entry for `desc` its role and import target (replacing one of the same role)."""
        index = self.index()
        ann = {**desc.get("annotations", {}), REF_NAME: role, ROLE: role, TARGET: target, **(extra or {})}
        entry = {**{k: v for k, v in desc.items() if k != "annotations"}, "annotations": ann}
        index["manifests"] = [m for m in index["manifests"] if m.get("annotations", {}).get(REF_NAME) != role]
        index["manifests"].append(entry)
        self.write_index(index)
        return Entry(role, entry)

    def index(self) -> dict:
        return json.loads((self.root / "index.json").read_text())

    def write_index(self, index: dict) -> None:
        (self.root / "index.json").write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")

    def entries(self) -> dict[str, Entry]:
        out = {}
        for m in self.index().get("manifests", []):
            role = m.get("annotations", {}).get(ROLE) or m.get("annotations", {}).get(REF_NAME)
            if role:
                out[role] = Entry(role, m)
        return out

    def read_json(self, digest: str) -> dict:
        return json.loads(self.blob_path(digest).read_bytes())


def pack(layout_dir: Path, out: Path) -> Path:
    """Tar the layout (uncompressed: weights do not compress) into `out`, atomically."""
    tmp = out.with_name(f".{out.name}.partial")
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(layout_dir.rglob("*")):
            info = tar.gettarinfo(str(path), arcname=str(path.relative_to(layout_dir)))
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = 0  # the same content gives the same bundle bytes
            if path.is_file():
                with open(path, "rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)
    tmp.replace(out)
    return out


def unpack(bundle: Path, dest: Path) -> Layout:
    """Extract a bundle tar: regular files and directories only, nothing outside `dest`."""
    if not bundle.is_file():
        raise UserError(f"{bundle}: no such bundle file", field="BUNDLE", hint="pass the .tar that `packager bundle` wrote")
    try:
        with tarfile.open(bundle) as tar:
            tar.extractall(dest, filter="data")
    except (tarfile.TarError, OSError) as exc:
        raise UserError(f"{bundle} is not a readable bundle: {exc}", field="BUNDLE",
                        hint="pass the .tar that `packager bundle` wrote") from None
    if not (dest / "oci-layout").is_file() or not (dest / "index.json").is_file():
        raise UserError(f"{bundle} holds no OCI image layout (oci-layout, index.json)", field="BUNDLE",
                        hint="pass the .tar that `packager bundle` wrote")
    return Layout(dest)
