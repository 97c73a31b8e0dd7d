"""Output directories packager may replace: only its own.

`packager build` and `packager chart` write OUT/<name>/ and replace it on a
re-run. A marker file says a directory is packager's; anything else at that
path (a user's project, `..`, `/`) is refused, never removed.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from packager.errors import UserError

MARKER = ".packager-output"


def child(out: str | Path, name: str, field: str) -> Path:
    """OUT/name, refusing a name that would land anywhere else."""
    out = Path(out)
    if not name or name in (".", "..") or Path(name).name != name or "\\" in name:
        raise UserError(f"{name!r} is not a plain directory name", field=field,
                        hint="names are DNS-1123 labels: lower-case letters, digits and '-'")
    target = out / name
    if target.resolve().parent != out.resolve():
        raise UserError(f"{name!r} would be written outside {out}", field=field, hint="use a plain name")
    return target


def check_replaceable(target: Path) -> None:
    """UserError unless `target` is absent or a directory packager wrote."""
    if target.is_symlink() or (target.exists() and not (target / MARKER).is_file()):
        raise UserError(f"{target} exists and was not written by packager; refusing to replace it",
                        field="--out", hint=f"choose another --out, or remove {target} yourself")


def mark(directory: Path, what: str) -> None:
    (directory / MARKER).write_text(json.dumps({"written_by": f"packager {what}"}) + "\n", encoding="utf-8")


def replace_dir(staged: Path, final: Path) -> None:
    """Move the staged output into place; the previous one (packager's, checked) goes."""
    check_replaceable(final)
    old = final.parent / f".{final.name}.old"
    if old.exists():
        check_replaceable(old)
        shutil.rmtree(old)
    if final.exists():
        final.rename(old)
    staged.rename(final)
    if old.exists():
        shutil.rmtree(old, ignore_errors=True)
