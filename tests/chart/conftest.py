from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # chart_checks, without a package

from chart_checks import REPO  # noqa: E402

REGISTRY = "127.0.0.1:5000"


@pytest.fixture(scope="session")
def registry() -> str:
    """The loopback OCI registry, started by the same script CI runs."""
    subprocess.run(["bash", str(REPO / ".ci" / "registry.sh")], check=True, timeout=900)
    return REGISTRY
