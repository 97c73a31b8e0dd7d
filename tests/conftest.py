"""Shared test helpers: run the real CLI in-process and capture what a user would see."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "manifests" / "models"
HARDWARE = ROOT / "manifests" / "hardware"


@pytest.fixture
def run_cli(capsys):
    """Run `packager ARGS` through its real entry point; returns (exit_code, stdout, stderr)."""
    from packager.cli import main

    def run(*args: str):
        old = sys.argv
        sys.argv = ["packager", *args]
        code = 0
        try:
            main()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        finally:
            sys.argv = old
        out = capsys.readouterr()
        return code, out.out, out.err

    return run
