"""A bundle unpacks on the oldest Python that pyproject admits, Debian 12's 3.11.2 (the README's fresh
machine and the image's own Python): `extractall(filter="data")` exists only from 3.11.4, so there it
was a TypeError traceback from `verify` and `import`. The unpack writes each checked member itself:
fixed modes, no owner taken from the tar, new files only."""
from __future__ import annotations

import io
import os
import stat
import subprocess
import tarfile
from pathlib import Path

from packager.errors import UserError
from packager.supply import oci_layout as L
from tests.image.conftest import BASE, require_engine
from tests.supply.conftest import REPO

FILES = {"oci-layout": b'{"imageLayoutVersion": "1.0.0"}', "index.json": b'{"schemaVersion": 2, "manifests": []}',
         "blobs/sha256/" + "a" * 64: b"blob"}


def bundle_tar(path: Path) -> Path:
    """A small layout tar whose members ask for setuid modes and a foreign owner."""
    with tarfile.open(path, "w") as tar:
        for d in ("blobs", "blobs/sha256"):
            info = tarfile.TarInfo(d)
            info.type, info.mode, info.uid, info.gid = tarfile.DIRTYPE, 0o7777, 12345, 12345
            tar.addfile(info)
        for name, data in FILES.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.uid, info.gid, info.uname = len(data), 0o4777, 12345, 12345, "mallory"
            tar.addfile(info, io.BytesIO(data))
    return path


def test_unpack_takes_no_modes_and_no_owner_from_the_tar(tmp_path):
    lay = L.unpack(bundle_tar(tmp_path / "b.tar"), tmp_path / "out")
    for name, data in FILES.items():
        st = (lay.root / name).stat()
        assert (lay.root / name).read_bytes() == data
        assert stat.S_IMODE(st.st_mode) & 0o7022 == 0, f"{name}: mode {oct(st.st_mode)}"
        assert st.st_uid == os.getuid(), f"{name}: owner {st.st_uid} taken from the tar"
    st = (lay.root / "blobs" / "sha256").stat()
    assert stat.S_IMODE(st.st_mode) & 0o7022 == 0 and st.st_uid == os.getuid()


def test_a_member_over_an_existing_file_is_refused_not_overwritten(tmp_path):
    path = bundle_tar(tmp_path / "b.tar")
    with tarfile.open(path, "a") as tar:  # a directory entry where a file already landed
        info = tarfile.TarInfo("oci-layout/x")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    try:
        L.unpack(path, tmp_path / "out")
    except UserError as e:
        assert "not a readable bundle" in str(e)
    else:
        raise AssertionError("a member under a file unpacked")
    assert (tmp_path / "out" / "oci-layout").read_bytes() == FILES["oci-layout"]


def test_unpack_and_every_module_compile_on_debian_12_python(tmp_path):
    """The oldest Python we claim, for real: the base image's (Debian 12). It must satisfy requires-python,
    unpack a bundle, and compile every module of packager/, runtimes/ and tests/ (syntax newer than it fails)."""
    cli = require_engine()
    bundle_tar(tmp_path / "b.tar")
    (tmp_path / "out").mkdir()
    os.chmod(tmp_path / "out", 0o777)
    code = (
        "import pathlib, platform, sys, tomllib\n"
        "from packager.supply import oci_layout as L\n"
        "lay = L.unpack(pathlib.Path('/w/b.tar'), pathlib.Path('/w/out/layout'))\n"
        "print('unpacked', sorted(p.name for p in lay.root.iterdir()))\n"
        "for top in ('packager', 'runtimes', 'tests', 'bench', 'tools'):\n"
        "    for p in pathlib.Path(top).rglob('*.py'):\n"
        "        compile(p.read_bytes(), str(p), 'exec')\n"
        "print('python', platform.python_version())\n"
    )
    proc = subprocess.run([cli, "run", "--rm", "--network", "none", "-v", f"{REPO}:/src:ro", "-v", f"{tmp_path}:/w",
                           "-w", "/src", "-e", "PYTHONPATH=/src", "-e", "PYTHONDONTWRITEBYTECODE=1", BASE,
                           "python3", "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "unpacked ['blobs', 'index.json', 'oci-layout']" in proc.stdout, proc.stdout
    version = proc.stdout.split("python ", 1)[1].strip()
    from packaging.specifiers import SpecifierSet
    import tomllib

    floor = SpecifierSet(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"])
    assert version in floor, f"Debian 12's Python {version} is outside requires-python {floor}: the image cannot install"
