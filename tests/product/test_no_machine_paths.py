"""No machine's paths in the project: scripts, code and tests run from any checkout location on any machine.
Caches and tool venvs live under ${XDG_CACHE_HOME:-$HOME/.cache}/packager/ (packager.cachedir)."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Host directories a file could only mean on one machine (in-image paths like /opt/packager are the image's layout).
MACHINE = re.compile(r"(?<![\w.])(/work/|/home/\w|/root/(?!somewhere)|/opt/packager-tools|\.venv-vllm)")  # no-machine-path-ok


def test_no_file_names_a_machine_path():
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    hits = []
    for rel in files:
        p = ROOT / rel
        if not p.is_file() or p.suffix in (".png", ".whl", ".gguf"):
            continue
        for n, line in enumerate(p.read_text(errors="replace").splitlines(), 1):
            if MACHINE.search(line) and "no-machine-path-ok" not in line:
                hits.append(f"{rel}:{n}: {line.strip()}")
    assert not hits, "machine paths (use ${XDG_CACHE_HOME:-$HOME/.cache}/packager/ or a relative path):\n" + "\n".join(hits)


def test_cache_dir_follows_xdg(monkeypatch, tmp_path):
    from packager.cachedir import cache_dir

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_dir("tools") == tmp_path / "packager" / "tools"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "packager"
