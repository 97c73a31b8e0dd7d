"""The project's own wheel (packager + runtimes), the image's code layer."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from packager.errors import UserError

# Copied into a scratch tree before building: an in-tree setuptools build keeps
# a build/lib that can smuggle deleted modules into the wheel.
_SOURCES = ("pyproject.toml", "README.md", "LICENSE", "packager", "runtimes")
# Fixed zip timestamps: the same code gives the same wheel bytes, so an
# unchanged project leaves the engine's code layer cached.
_EPOCH = "315532800"


def project_root() -> Path:
    """Where packager runs from: a source checkout (it holds pyproject.toml) or the directory it is installed in."""
    return Path(__file__).resolve().parents[2]


def is_checkout(root: Path) -> bool:
    return (root / "pyproject.toml").is_file() and (root / "packager").is_dir()


def build_project_wheel(dest: Path, root: Path | None = None, log=print) -> Path:
    """The wheel of the packager that is running: built from the checkout, or re-packed from the installed files."""
    root = root or project_root()
    dest.mkdir(parents=True, exist_ok=True)
    for old in dest.glob("*.whl"):
        old.unlink()
    if not is_checkout(root):
        from packager.image.repack import repack_installed

        wheel = repack_installed(dest)
        log(f"code: {wheel.name} ({wheel.stat().st_size / 1024:.0f} KiB, re-packed from the installed packager)")
        return wheel
    with tempfile.TemporaryDirectory(prefix="packager-wheel-") as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        for name in _SOURCES:
            p = root / name
            if p.is_dir():
                shutil.copytree(p, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
            elif p.is_file():
                shutil.copy2(p, src / name)
        if not (src / "README.md").exists():  # pyproject names a readme; a checkout may lack it
            (src / "README.md").write_text("packager\n")
        for f in src.rglob("*"):  # normalise mtimes too: setuptools copies them into the zip
            os.utime(f, (int(_EPOCH), int(_EPOCH)))
        env = dict(os.environ, SOURCE_DATE_EPOCH=_EPOCH)
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
             "--disable-pip-version-check", "-q", "-w", str(dest), str(src)],
            capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            raise UserError(f"pip wheel of the project failed:\n{proc.stderr[-3000:]}")
    wheels = sorted(dest.glob("*.whl"))
    if len(wheels) != 1:
        raise UserError(f"expected one project wheel in {dest}, found {[w.name for w in wheels]}")
    log(f"code: {wheels[0].name} ({wheels[0].stat().st_size / 1024:.0f} KiB)")
    return wheels[0]
