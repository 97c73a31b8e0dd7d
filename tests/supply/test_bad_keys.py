"""Key files that do not read are bad input (exit 2, one line), not a traceback or a failed check (exit 1)."""
from __future__ import annotations

import subprocess
import sys

import pytest


def packager(*args, cwd):
    return subprocess.run([sys.executable, "-m", "packager.cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=120)


@pytest.mark.parametrize("name,body", [("keys.json", "{bad"), ("model-signing.pub", "not a PEM key\n")])
def test_a_damaged_key_file_is_exit_2(tmp_path, name, body):
    assert packager("keys", "init", "--out", "keys", cwd=tmp_path).returncode == 0
    (tmp_path / "keys" / name).write_text(body)
    (tmp_path / "b.tar").write_bytes(b"")
    r = packager("verify", "b.tar", "--keys", "keys", cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "the keys do not read" in r.stderr, r.stderr
