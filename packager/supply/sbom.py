"""A CycloneDX SBOM of an image, from the wheels it was built from (with their sha256).

The wheelhouse is exactly what the image's venv installed (the build runs offline from it),
so pinning each wheel's name, version and hash and handing that to cyclonedx-py's
`requirements` reader lists every Python component the image holds, hashes included.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from packager.errors import UserError
from runtimes.digests import sha256_file

WHEEL = re.compile(r"^(?P<name>[^-]+)-(?P<version>[^-]+)(-\d[^-]*)?-[^-]+-[^-]+-[^-]+\.whl$")


def pinned_lines(*directories: Path) -> list[str]:
    """`name==version --hash=sha256:...` for every wheel in the directories, sorted by name."""
    lines = {}
    for d in directories:
        for wheel in sorted(Path(d).glob("*.whl")):
            m = WHEEL.match(wheel.name)
            if not m:
                raise UserError(f"{wheel} is not a wheel file name (PEP 427)", field="wheelhouse")
            name = m["name"].replace("_", "-").lower()
            lines[name] = f"{name}=={m['version']} --hash=sha256:{sha256_file(wheel)}"
    if not lines:
        raise UserError(f"no wheels in {', '.join(map(str, directories))}", field="wheelhouse",
                        hint="build the image first: packager build MODEL --hardware HW")
    return [lines[k] for k in sorted(lines)]


def cyclonedx_cli() -> list[str]:
    exe = shutil.which("cyclonedx-py") or str(Path(sys.executable).parent / "cyclonedx-py")
    if not os.access(exe, os.X_OK):
        raise UserError("cyclonedx-py is not installed", hint="pip install cyclonedx-bom (CI: bash .ci/supply_chain.sh)")
    return [exe]


def make_sbom(out: Path, *wheel_dirs: Path) -> Path:
    """CycloneDX 1.6 JSON at `out` (reproducible: no timestamp, no random serial number)."""
    with tempfile.TemporaryDirectory(prefix="packager-sbom-") as tmp:
        reqs = Path(tmp) / "requirements.txt"
        reqs.write_text("\n".join(pinned_lines(*wheel_dirs)) + "\n")
        # --no-validate: the schema check costs 5-10 s; the input is ours and machine-made.
        proc = subprocess.run([*cyclonedx_cli(), "requirements", "--output-reproducible", "--no-validate",
                               "--sv", "1.6", "--of", "JSON", "-o", str(out), str(reqs)],
                              capture_output=True, text=True)
    if proc.returncode != 0:
        raise UserError(f"cyclonedx-py failed: {proc.stderr.strip()[-800:]}", field="sbom")
    return out
