"""Models by name: a MODEL argument is a manifest path or the name of a known manifest.

Known manifests are the examples shipped inside the package (manifests/models/*.yaml, the package's
models/ in the wheel) and
any under `PACKAGER_MODELS` (directories, os.pathsep-separated; they win over the shipped
ones, so a team can pin its own variant under the same name). A name is a file's stem.
"""
from __future__ import annotations

import difflib
import os
from pathlib import Path

from packager.errors import UserError

SHIPPED = Path(__file__).resolve().parents[1] / "models"
ENV = "PACKAGER_MODELS"


def default_model_manifest() -> Path:
    """The embedded default model (SmolLM2-135M-Instruct) shipped inside the package (manifests/models/)."""
    path = SHIPPED / "smollm2-135m-instruct.yaml"
    if not path.is_file():
        raise UserError(f"no default model manifest at {path}", hint="pass MODEL (a model manifest)")
    return path


def looks_like_path(arg: str) -> bool:
    """A path names a file (an extension or a directory part); anything else is a name."""
    return arg.endswith((".yaml", ".yml", ".json")) or "/" in arg or os.sep in arg or Path(arg).is_file()


def model_dirs() -> list[tuple[Path, str]]:
    """(directory, origin) in lookup order: PACKAGER_MODELS first, then the shipped examples."""
    dirs = []
    for part in filter(None, os.environ.get(ENV, "").split(os.pathsep)):
        d = Path(part).expanduser()
        if not d.is_dir():
            raise UserError(f"{part} is not a directory", field=ENV,
                            hint=f"point {ENV} at a directory of model manifests (*.yaml), or unset it")
        dirs.append((d, ENV))
    dirs.append((SHIPPED, "shipped"))
    return dirs


def known_models() -> dict[str, tuple[Path, str]]:
    """name -> (manifest path, origin); the first directory that has a name wins."""
    found: dict[str, tuple[Path, str]] = {}
    for d, origin in model_dirs():
        for p in sorted([*d.glob("*.yaml"), *d.glob("*.yml")]):
            found.setdefault(p.stem, (p, origin))
    return found


def close_names(arg: str, names: list[str]) -> list[str]:
    lower = arg.lower()
    return [n for n in names if lower in n] or difflib.get_close_matches(lower, names, n=3, cutoff=0.4)


def resolve_model(arg: str) -> str:
    """The manifest path for MODEL: a path as given, else a known name; unknown names list the known ones."""
    if looks_like_path(arg):
        if Path(arg).exists():
            return arg
        known = known_models()
        stem = Path(arg).stem
        guess = [stem] if stem in known else close_names(stem, list(known))
        raise UserError("file not found" + (f"; did you mean the model named {' or '.join(repr(g) for g in guess)}?"
                                            if guess else ""), file=arg, field="MODEL",
                        hint="check the path, or pass a known model name: " + ", ".join(known))
    known = known_models()
    if arg in known:
        return str(known[arg][0])
    guess = close_names(arg, list(known))
    raise UserError(
        f"unknown model {arg!r}" + (f"; did you mean {' or '.join(repr(g) for g in guess)}?" if guess else ""),
        field="MODEL",
        hint="use a model manifest (.yaml) or one of the known names: " + ", ".join(known)
             + f" (`packager models` lists them; add yours with {ENV}=DIR or `packager init`)")
