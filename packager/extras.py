"""Optional extras: a command whose extra is missing says which `pip install 'packager[...]'` to run.

The extras and their requirements come from the package's own metadata (pyproject's
optional-dependencies as installed: Requires-Dist with `extra == "..."`), so this list
cannot drift from pyproject.toml.
"""
from __future__ import annotations

import importlib.util
import re
from functools import lru_cache

from packager.errors import UserError

# Distributions whose import name is not their project name.
IMPORT_NAMES = {"helm-python-sdk": "helm_python", "nvidia-ml-py": "pynvml", "pyyaml": "yaml", "pyopenssl": "OpenSSL",
                "cyclonedx-bom": "cyclonedx"}
SKIP = {"test"}  # test tools are not a user-facing extra


def _requires() -> list[str]:
    from importlib import metadata

    try:
        return metadata.requires("packager") or []
    except metadata.PackageNotFoundError:  # a bare checkout on sys.path: read pyproject.toml itself
        import tomllib
        from pathlib import Path

        data = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
        return [f'{r}; extra == "{e}"' for e, reqs in data["project"]["optional-dependencies"].items() for r in reqs]


@lru_cache(maxsize=1)
def extras() -> dict[str, list[str]]:
    """extra -> import names of its requirements."""
    out: dict[str, list[str]] = {}
    for req in _requires():
        m = re.match(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*).*;\s*extra\s*==\s*['\"]([^'\"]+)['\"]", req)
        if not m or m[2] in SKIP:
            continue
        dist = m[1].lower().replace("_", "-")
        out.setdefault(m[2], []).append(IMPORT_NAMES.get(dist, dist.replace("-", "_")))
    return out


def extra_for(module: str | None) -> str | None:
    """The extra that brings top-level module `module` (None when no extra does)."""
    top = (module or "").split(".")[0]
    return next((e for e, mods in extras().items() if top in mods), None)


def missing_extra_error(module: str, extra: str) -> UserError:
    return UserError(f"this command needs {module!r}, from the optional extra [{extra}], which is not installed",
                     field="extras", hint=f"pip install 'packager[{extra}]'")


def require(extra: str, *modules: str) -> None:
    """Fail politely before work starts (e.g. before exec'ing the runtime) when the extra is missing."""
    for mod in modules or extras().get(extra, []):
        if importlib.util.find_spec(mod) is None:
            raise missing_extra_error(mod, extra)
