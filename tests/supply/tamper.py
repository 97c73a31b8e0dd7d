"""An attacker's tools for the supply tests: rewrite a bundle's layout, keep every digest up to the index
consistent, re-sign a release statement with keys the test holds, and run the CLI somewhere we can watch."""
from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

from packager.supply import oci_layout as L, statement as S
from tests.supply.conftest import REPO


def run_watched(*args: str, root: Path, timeout: int = 900) -> tuple[subprocess.CompletedProcess, Path]:
    """The CLI with TMPDIR and the working directory inside `root`, so a write anywhere else is visible.
    Returns the process and the TMPDIR (which a clean run leaves empty)."""
    tmpdir, cwd = root / "tmpdir", root / "cwd"
    tmpdir.mkdir(parents=True, exist_ok=True)
    cwd.mkdir(exist_ok=True)
    code = "import sys; from packager.cli import main; sys.argv[0] = 'packager'; main()"
    env = {**os.environ, "TMPDIR": str(tmpdir), "PYTHONPATH": str(REPO)}
    proc = subprocess.run([os.environ.get("PYTHON", "python3"), "-c", code, *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, env=env)
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return proc, tmpdir


def assert_nothing_written(root: Path, allowed: set[str]) -> None:
    """Under `root` only the `allowed` names, an empty TMPDIR and an empty working directory."""
    names = {p.name for p in root.iterdir()}
    assert names <= allowed | {"tmpdir", "cwd"}, f"written outside the temp dir: {sorted(names - allowed)}"
    for d in ("tmpdir", "cwd"):
        if (root / d).is_dir():
            assert not list((root / d).iterdir()), f"left in {d}: {list((root / d).iterdir())}"


def clone(base: Path, dest: Path) -> L.Layout:
    """A copy of an unpacked layout made of hard links (instant); change it only through `replace`."""
    shutil.copytree(base, dest, copy_function=os.link)
    return L.Layout(dest)


def replace(path: Path, data: bytes) -> None:
    path.unlink(missing_ok=True)  # never write through a hard link into the shared copy
    path.write_bytes(data)


def write_index(lay: L.Layout, index: dict) -> None:
    replace(lay.root / "index.json", json.dumps(index, indent=2).encode())


def add_blob(lay: L.Layout, data: bytes, media_type: str, annotations: dict | None = None) -> dict:
    return lay.add_bytes(data, media_type, annotations)


def manifest_of(lay: L.Layout, ref: str) -> tuple[dict, dict]:
    """(index entry, manifest) of the entry named `ref`."""
    entry = next(m for m in lay.index()["manifests"] if m.get("annotations", {}).get(L.REF_NAME) == ref)
    return entry, json.loads(lay.blob_path(entry["digest"]).read_bytes())


def put_manifest(lay: L.Layout, ref: str, manifest: dict) -> dict:
    """Store `manifest` and point the index entry `ref` at it (a consistent forgery up to the index)."""
    raw = json.dumps(manifest).encode()
    desc = lay.add_bytes(raw, L.MANIFEST_TYPE)
    index = lay.index()
    for m in index["manifests"]:
        if m.get("annotations", {}).get(L.REF_NAME) == ref:
            m.update(digest=desc["digest"], size=desc["size"])
    write_index(lay, index)
    return desc


def relink(lay: L.Layout, ref: str, old: str, new: dict) -> dict:
    """Point `ref`'s manifest layer `old` at the blob `new` and fix every digest up to the index."""
    _, manifest = manifest_of(lay, ref)
    for ly in manifest["layers"]:
        if ly["digest"] == old:
            ly.update(digest=new["digest"], size=new["size"])
    return put_manifest(lay, ref, manifest)


def statement_of(lay: L.Layout) -> dict:
    """The statement's payload, read without checking anything (the attacker's view)."""
    _, manifest = manifest_of(lay, S.REF)
    envelope = json.loads(lay.blob_path(manifest["layers"][0]["digest"]).read_bytes())
    return json.loads(base64.b64decode(envelope["payload"]))


def resign(lay: L.Layout, keys, edit) -> dict:
    """edit(statement) then sign it with `keys` (whoever holds them) and make it the bundle's release."""
    from packager.supply.keys import MODEL_KEY

    doc = statement_of(lay)
    edit(doc)
    envelope = S.sign(doc, keys.path(MODEL_KEY), keys.model)
    layer = lay.add_bytes(envelope, S.ENVELOPE_TYPE)
    _, manifest = manifest_of(lay, S.REF)
    manifest["layers"] = [layer]
    return put_manifest(lay, S.REF, manifest)


def set_subject(doc: dict, name: str, digest: str) -> None:
    for s in doc["subject"]:
        if s["name"] == name:
            s["digest"] = {"sha256": digest.removeprefix("sha256:")}


def thin_pack(lay: L.Layout, out: Path, refs: tuple[str, ...] = (S.REF,), index: bytes | None = None) -> Path:
    """A small tar of the layout: oci-layout, index.json (or `index`) and the blobs of the named manifests
    only. Enough for every refusal that comes before the parts are read."""
    blobs = set()
    for ref in refs:
        entry, manifest = manifest_of(lay, ref)
        blobs |= {entry["digest"], manifest["config"]["digest"], *(ly["digest"] for ly in manifest["layers"])}
    with tarfile.open(out, "w") as tar:
        tar.add(lay.root / "oci-layout", "oci-layout")
        data = index if index is not None else (lay.root / "index.json").read_bytes()
        info = tarfile.TarInfo("index.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        for d in sorted(blobs):
            tar.add(lay.blob_path(d), f"blobs/sha256/{d.removeprefix('sha256:')}")
    return out


def synthetic(root: Path, keys, *, version: str = "1-oci", identity: str = "packager-test/m", edit=None) -> L.Layout:
    """A layout holding only a release statement signed by `keys`, over parts that are not there:
    enough for every check that comes before the parts. `edit(statement)` runs before signing."""
    from packager.supply.keys import MODEL_KEY

    lay = L.Layout(root).init()
    fake = {n: "sha256:" + hashlib.sha256(n.encode()).hexdigest() for n in (*S.PARTS, *S.BLOBS, "signatures/image-1")}
    doc = S.make([(n, d, L.MANIFEST_TYPE) for n, d in fake.items()], identity=identity, version=version,
                 model={"name": "m"}, signed_identity=f"127.0.0.1:5000/{identity}:{version}",
                 chart_archive="m-0.1.0.tgz", packager_version="0")
    if edit:
        edit(doc)
    envelope = S.sign(doc, keys.path(MODEL_KEY), keys.model)
    lay.add_artifact(S.REF, S.ARTIFACT_TYPE, [lay.add_bytes(envelope, S.ENVELOPE_TYPE)])
    return lay
