"""An OCI image layout on disk (oci-layout, index.json, blobs/sha256/...): write, read, pack, unpack.

skopeo copies the image and the weights artifact into it; the small artifacts (chart, plan,
SBOM, signatures, the release statement) are written here directly as OCI artifact manifests.

Reading never trusts what it reads: index.json and every manifest are checked for shape
(`Malformed`, exit 2, naming the part and the field) before anything uses them, and a blob is
only ever reached through a checked sha256 digest, so no name in a bundle becomes a path.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tarfile
from pathlib import Path

from packager.errors import UserError
from runtimes.digests import oci_digest, oci_digest_file

INDEX_TYPE = "application/vnd.oci.image.index.v1+json"
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
EMPTY_TYPE = "application/vnd.oci.empty.v1+json"
REF_NAME = "org.opencontainers.image.ref.name"
TITLE = "org.opencontainers.image.title"
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
MAX_JSON = 4 << 20  # an index, a manifest or a config larger than this is not one packager wrote
HINT = "the bundle is damaged or was not written by `packager bundle`: fetch it again from its source"


class Malformed(UserError):
    """An index, manifest or descriptor of the wrong shape: exit 2, naming the part and the field."""

    def __init__(self, part: str, message: str) -> None:
        super().__init__(f"{part}: {message}", field="BUNDLE", hint=HINT)
        self.part = part


def check_descriptor(d: object, where: str, part: str) -> dict:
    """An OCI descriptor: mediaType (text), digest (sha256:<64 hex>), size (an integer >= 0),
    annotations (text to text) and artifactType (text) when present."""
    if not isinstance(d, dict):
        raise Malformed(part, f"{where} is not an object")
    if not isinstance(d.get("mediaType"), str) or not d["mediaType"]:
        raise Malformed(part, f"{where}.mediaType is missing or not text")
    if not isinstance(d.get("digest"), str) or not DIGEST.fullmatch(d["digest"]):
        raise Malformed(part, f"{where}.digest {d.get('digest')!r} is not sha256:<64 lower-case hex>")
    size = d.get("size")
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise Malformed(part, f"{where}.size {size!r} is missing or not a whole number of bytes")
    ann = d.get("annotations", {})
    if not isinstance(ann, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in ann.items()):
        raise Malformed(part, f"{where}.annotations is not a map of text to text")
    if "artifactType" in d and not isinstance(d["artifactType"], str):
        raise Malformed(part, f"{where}.artifactType is not text")
    return d


def json_value(raw: bytes | str) -> object:
    """json.loads, where nesting past Python's recursion limit is a ValueError like any other bad JSON
    (json.loads raises RecursionError: 100 KB of '[' in a bundle was a traceback)."""
    try:
        return json.loads(raw)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def parse_json(raw: bytes, part: str) -> dict:
    if len(raw) > MAX_JSON:
        raise Malformed(part, f"{len(raw)} bytes, over the {MAX_JSON} a manifest may have")
    try:
        doc = json_value(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Malformed(part, f"not JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise Malformed(part, "not a JSON object")
    return doc


def parse_manifest(raw: bytes, part: str) -> dict:
    """An OCI image manifest: schemaVersion 2, a config descriptor, a list of layer descriptors."""
    m = parse_json(raw, f"{part} manifest")
    if m.get("schemaVersion") != 2:
        raise Malformed(f"{part} manifest", f"schemaVersion {m.get('schemaVersion')!r} is not 2")
    if m.get("mediaType", MANIFEST_TYPE) != MANIFEST_TYPE:
        raise Malformed(f"{part} manifest", f"mediaType {m.get('mediaType')!r} is not {MANIFEST_TYPE}")
    check_descriptor(m.get("config"), "config", f"{part} manifest")
    if not isinstance(m.get("layers"), list):
        raise Malformed(f"{part} manifest", "layers is missing or not a list")
    for i, layer in enumerate(m["layers"]):
        check_descriptor(layer, f"layers[{i}]", f"{part} manifest")
    if "annotations" in m and (not isinstance(m["annotations"], dict)
                               or not all(isinstance(v, str) for v in m["annotations"].values())):
        raise Malformed(f"{part} manifest", "annotations is not a map of text to text")
    return m


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
        """The only way from a name to a path: a checked sha256 digest, always under blobs/sha256/."""
        if not isinstance(digest, str) or not DIGEST.fullmatch(digest):
            raise ValueError(f"not a sha256 digest: {digest!r}")
        return self.root / "blobs" / "sha256" / digest.removeprefix("sha256:")

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

    def add_artifact(self, ref: str, artifact_type: str, layers: list[dict], config: dict | None = None,
                     annotations: dict | None = None) -> dict:
        """An OCI artifact manifest over blobs already added, named `ref` in the index; its descriptor."""
        config = config or self.add_bytes(b"{}", EMPTY_TYPE)
        manifest = {"schemaVersion": 2, "mediaType": MANIFEST_TYPE, "artifactType": artifact_type,
                    "config": config, "layers": layers}
        if annotations:
            manifest["annotations"] = annotations
        desc = self.add_bytes(json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode(), MANIFEST_TYPE)
        desc["artifactType"] = artifact_type
        return self.name(ref, desc)

    def name(self, ref: str, desc: dict) -> dict:
        """Name `desc` `ref` in the index (replacing an entry of that name); skopeo copies by this name."""
        index = self.index()
        entry = {**{k: v for k, v in desc.items() if k != "annotations"}, "annotations": {REF_NAME: ref}}
        index["manifests"] = [m for m in index["manifests"] if m.get("annotations", {}).get(REF_NAME) != ref]
        index["manifests"].append(entry)
        self.write_index(index)
        return entry

    def index(self) -> dict:
        return json.loads((self.root / "index.json").read_text())

    def write_index(self, index: dict) -> None:
        (self.root / "index.json").write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")

    def checked_index(self) -> dict[str, dict]:
        """index.json, checked: every entry a descriptor, each ref name once. Returns ref name -> descriptor."""
        path = self.root / "index.json"
        index = parse_json(path.read_bytes() if path.is_file() else b"", "index.json")
        if index.get("schemaVersion") != 2:
            raise Malformed("index.json", f"schemaVersion {index.get('schemaVersion')!r} is not 2")
        if not isinstance(index.get("manifests"), list):
            raise Malformed("index.json", "manifests is missing or not a list")
        named: dict[str, dict] = {}
        for i, m in enumerate(index["manifests"]):
            check_descriptor(m, f"manifests[{i}]", "index.json")
            ref = m.get("annotations", {}).get(REF_NAME)
            if ref is None:
                continue
            if ref in named:
                raise Malformed("index.json", f"manifests[{i}] repeats the ref name {ref!r}: which one is meant "
                                "is ambiguous")
            named[ref] = m
        return named

    def read_blob(self, digest: str, part: str, limit: int = MAX_JSON) -> bytes | None:
        """The blob's bytes, None when absent; never more than `limit` bytes."""
        path = self.blob_path(digest)
        if not path.is_file():
            return None
        if path.stat().st_size > limit:
            raise Malformed(part, f"blob {digest} is {path.stat().st_size} bytes, over the {limit} this part may have")
        return path.read_bytes()


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


def _members(tar: tarfile.TarFile, bundle: Path):
    """Regular files and directories only, each name once (a repeated name would be overwritten
    by the later one: two bundles in one)."""
    seen = set()
    for member in tar:
        name = os.path.normpath(member.name)
        if member.name.startswith("/") or ".." in Path(member.name).parts:
            raise UserError(f"{bundle}: member {member.name!r} points outside the bundle", field="BUNDLE", hint=HINT)
        if not (member.isfile() or member.isdir()):
            raise UserError(f"{bundle}: member {member.name!r} is a link or device; a bundle holds files and "
                            "directories only", field="BUNDLE", hint=HINT)
        if member.isfile() and name in seen:
            raise UserError(f"{bundle}: member {member.name!r} appears twice", field="BUNDLE", hint=HINT)
        seen.add(name)
        yield member


def _extract(tar: tarfile.TarFile, member: tarfile.TarInfo, dest: Path) -> None:
    """One checked member, written here rather than by `extractall(filter="data")`, which Python has only
    from 3.11.4 (Debian 12 ships 3.11.2): fixed modes (no setuid, no owner from the tar), new files only,
    never through a link."""
    target = dest / os.path.normpath(member.name)
    if member.isdir():
        target.mkdir(mode=0o755, parents=True, exist_ok=True)
        return
    target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    src = tar.extractfile(member)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "wb") as out:
        shutil.copyfileobj(src, out, 1 << 20)


def unpack(bundle: Path, dest: Path) -> Layout:
    """Extract a bundle tar: regular files and directories only, nothing outside `dest`."""
    if not bundle.is_file():
        raise UserError(f"{bundle}: no such bundle file", field="BUNDLE", hint="pass the .tar that `packager bundle` wrote")
    try:
        dest.mkdir(parents=True, exist_ok=True)
        with tarfile.open(bundle) as tar:
            for member in _members(tar, bundle):
                _extract(tar, member, dest)
    except (tarfile.TarError, OSError) as exc:
        raise UserError(f"{bundle} is not a readable bundle: {exc}", field="BUNDLE",
                        hint="pass the .tar that `packager bundle` wrote") from None
    if not (dest / "oci-layout").is_file() or not (dest / "index.json").is_file():
        raise UserError(f"{bundle} holds no OCI image layout (oci-layout, index.json)", field="BUNDLE",
                        hint="pass the .tar that `packager bundle` wrote")
    return Layout(dest)
