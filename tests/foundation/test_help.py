"""Every command's --help renders (rich markup in a help string once turned `import --help` into a traceback)."""
from __future__ import annotations

import subprocess
import sys

import pytest
import typer

from packager.cli import app


def _commands(group: typer.Typer, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = [prefix + (c.name or c.callback.__name__,) for c in group.registered_commands]
    for sub in group.registered_groups:
        out += _commands(sub.typer_instance, prefix + (sub.name,))
    return out


@pytest.mark.parametrize("words", _commands(app), ids=" ".join)
def test_help_renders(words):
    r = subprocess.run([sys.executable, "-m", "packager.cli", *words, "--help"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert "Usage:" in r.stdout
