"""The wheelhouse: every Python dependency of the image, as wheels, for the
image's Python and platform, so the build itself needs no network.

Wheelhouses are cached under a directory keyed by a hash of the requirements
and the target, and hard-linked into each build context (rebuilds download nothing
and the engine sees identical files, so its layer cache holds).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

from packager.families import Family
from packager.errors import UserError

REQUIREMENTS = "requirements.txt"
NO_DEPS = "no-deps.txt"  # installed with --no-deps after REQUIREMENTS (Family.no_deps)


@dataclass(frozen=True)
class Wheelhouse:
    path: Path  # the cached directory (wheels + requirements.txt)
    key: str
    requirements: tuple[str, ...]
    downloaded: bool  # False when the cache already held it


def project_requirements(pyproject: Path, family: Family, extra: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The image's requirement lines: the project's deps plus the family's extras.

    Read from pyproject.toml in a checkout, else from the installed package's metadata (the same
    lists, as Requires-Dist), so the image follows the project's declared deps; the family's torch
    pin replaces the extra's loose `torch>=` line.
    """
    deps, optional, where = declared_requirements(pyproject)
    reqs: list[str] = list(deps)
    for name in family.extras:
        if name not in optional:
            raise UserError(f"the project declares no optional-dependencies.{name}", file=where,
                            field=f"project.optional-dependencies.{name}")
        reqs.extend(optional[name])
    reqs.extend(family.extra_deps)
    reqs.extend(extra)
    out: list[str] = []
    for r in reqs:
        if _name(r) == "torch":
            continue
        if r not in out:
            out.append(r)
    if family.torch:
        out.insert(0, family.torch)
    return tuple(out)


def declared_requirements(pyproject: Path | None) -> tuple[list[str], dict[str, list[str]], str]:
    """(dependencies, optional-dependencies, where they were read) from pyproject.toml or the installed package."""
    if pyproject is not None and pyproject.is_file():
        meta = tomllib.loads(pyproject.read_text())["project"]
        return list(meta.get("dependencies", [])), dict(meta.get("optional-dependencies", {})), str(pyproject)
    from importlib import metadata

    try:
        lines = metadata.requires("packager") or []
    except metadata.PackageNotFoundError:
        raise UserError("packager runs neither from a checkout nor from an installed package",
                        hint="pip install the packager wheel, or run from a source checkout") from None
    deps: list[str] = []
    optional: dict[str, list[str]] = {}
    for line in lines:
        req, _, marker = line.partition(";")
        m = re.search(r"""extra\s*==\s*['"]([^'"]+)['"]""", marker)
        if m is None:
            deps.append(line.strip())
            continue
        rest = re.sub(r"""\s*(and\s+)?extra\s*==\s*['"][^'"]+['"]\s*(and\s+)?""", " ", marker).strip()
        optional.setdefault(m[1], []).append(req.strip() + (f"; {rest}" if rest else ""))
    return deps, optional, "the installed packager's metadata (Requires-Dist)"


def _name(req: str) -> str:
    for sep in "<>=!~[; ":
        req = req.split(sep, 1)[0]
    return req.strip().lower().replace("_", "-")


def split_no_deps(requirements: tuple[str, ...], family: Family) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(requirements resolved with their dependencies, requirements installed without theirs)."""
    names = {_name(r) for r in family.no_deps}
    main = tuple(r for r in requirements if _name(r) not in names)
    bare = tuple(r for r in requirements if _name(r) in names)
    if not bare:
        return main, ()
    have = {_name(r) for r in bare}
    return main, bare + tuple(r for r in family.no_deps if _name(r) not in have and _name(r) != r.strip().lower())


def wheelhouse_key(requirements: tuple[str, ...], family: Family) -> str:
    blob = json.dumps({"requirements": requirements, "python": family.python_version,
                       "platforms": family.platforms, "pip_args": family.pip_args,
                       "no_deps": family.no_deps}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def pip_download_argv(requirements_file: Path, dest: Path, family: Family, no_deps: bool = False) -> list[str]:
    argv = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--progress-bar", "off",
            "-d", str(dest), "-r", str(requirements_file), *(["--no-deps"] if no_deps else []),
            # Binary wheels for the image's interpreter, not this machine's.
            "--only-binary=:all:", "--implementation", "cp",
            "--python-version", family.python_version,
            "--abi", "cp" + family.python_version.replace(".", "")]
    for p in family.platforms:
        argv += ["--platform", p]
    return argv + list(family.pip_args)


def ensure_wheelhouse(cache_dir: Path, family: Family, requirements: tuple[str, ...], log=print) -> Wheelhouse:
    key = wheelhouse_key(requirements, family)
    final = cache_dir / "wheelhouse" / f"{family.name}-{key}"
    if (final / REQUIREMENTS).is_file():
        log(f"wheelhouse: cached {final} ({_size_mib(final):.0f} MiB)")
        return Wheelhouse(final, key, requirements, downloaded=False)
    tmp = final.with_name(final.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    main, bare = split_no_deps(requirements, family)
    log(f"wheelhouse: pip download for Python {family.python_version} ({len(requirements)} requirements"
        + (f", {len(bare)} without their dependencies" if bare else "") + ")")
    for name, lines, no_deps in ((REQUIREMENTS, main, False), (NO_DEPS, bare, True)):
        (tmp / name).write_text("".join(f"{line}\n" for line in lines))  # the Dockerfile installs both files
        if not lines:
            continue
        proc = subprocess.run(pip_download_argv(tmp / name, tmp, family, no_deps), capture_output=True, text=True)
        if proc.returncode != 0:
            shutil.rmtree(tmp, ignore_errors=True)
            err = "\n".join(l for l in proc.stderr.splitlines() if "is ignored:" not in l)
            raise UserError(f"pip download failed for the {family.name} wheelhouse:\n{err[-3000:]}",
                            hint="check the requirements and that PyPI (or a local index) is reachable")
    _check_torch(tmp, family)
    # Atomic publish: a crashed download never looks like a cached wheelhouse.
    tmp.rename(final)
    log(f"wheelhouse: {final} ({_size_mib(final):.0f} MiB)")
    return Wheelhouse(final, key, requirements, downloaded=True)


def _check_torch(path: Path, family: Family) -> None:
    # The CPU image must not carry a multi-GB CUDA torch by accident.
    if family.name != "cpu" or not family.torch:
        return
    torches = [p.name for p in path.glob("torch-*.whl")]
    if torches and not any("+cpu" in t for t in torches):
        raise UserError(f"the cpu wheelhouse got a non-CPU torch build: {torches}",
                        hint="install the CPU wheel locally (pip download takes it from --find-links) "
                             "or pass --opt torch=<requirement>")


def link_into(src: Path, dest: Path) -> None:
    """Hard-link every file of `src` into `dest` (copy across filesystems)."""
    dest.mkdir(parents=True, exist_ok=True)
    for f in sorted(src.iterdir()):
        if not f.is_file():
            continue
        target = dest / f.name
        if target.exists():
            if target.stat().st_ino == f.stat().st_ino:
                continue
            target.unlink()
        try:
            os.link(f, target)
        except OSError:
            shutil.copy2(f, target)
    for stale in dest.iterdir():
        if not (src / stale.name).exists():
            stale.unlink()


def _size_mib(path: Path) -> float:
    return sum(f.stat().st_size for f in path.iterdir() if f.is_file()) / 2**20
