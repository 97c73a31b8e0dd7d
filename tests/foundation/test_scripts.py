"""txtar-style end-to-end CLI scripts (tests/foundation/scripts/*.txtar), after Cog's.

A script is commands with their expected outcome, then the files they use:

    # comment
    packager validate bad.yaml         run the real CLI (in-process), cwd = a temp dir holding the files
    exit 2                             its exit code
    stderr 'bad.yaml:3: .*layerz'      a regex its stderr must match (stdout likewise; `! stderr RE`: must not)
    -- bad.yaml --                     a file, up to the next `-- name --` or the end
    name: x

`$ROOT` in a command is the repository root.
"""
from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = sorted((Path(__file__).parent / "scripts").glob("*.txtar"))
FILE = re.compile(r"^-- (.+) --$")


def parse(text: str) -> tuple[list[str], dict[str, str]]:
    script, files, current = [], {}, None
    for line in text.splitlines(keepends=True):
        m = FILE.match(line.rstrip("\n"))
        if m:
            current = m[1]
            files[current] = ""
        elif current is not None:
            files[current] += line
        elif line.strip() and not line.lstrip().startswith("#"):
            script.append(line.strip())
    return script, files


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.stem)
def test_script(path, run_cli, tmp_path, monkeypatch):
    script, files = parse(path.read_text())
    for name, body in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(body)
    monkeypatch.chdir(tmp_path)
    result = None
    for n, line in enumerate(script, 1):
        words = shlex.split(line.replace("$ROOT", str(ROOT)))
        where = f"{path.name}: step {n}: {line}"
        if words[0] == "packager":
            result = dict(zip(("exit", "stdout", "stderr"), run_cli(*words[1:])))
            assert "Traceback" not in result["stderr"], where + "\n" + result["stderr"]
        elif words[0] == "exit":
            assert result["exit"] == int(words[1]), f"{where}\n{result['stderr']}"
        elif words[0] in ("stdout", "stderr"):
            assert re.search(words[1], result[words[0]], re.M), f"{where}\n--- {words[0]}:\n{result[words[0]]}"
        elif words[0] == "!" and words[1] in ("stdout", "stderr"):
            assert not re.search(words[2], result[words[1]], re.M), f"{where}\n--- {words[1]}:\n{result[words[1]]}"
        elif words[0] == "exists":
            assert Path(words[1]).exists() == (words[2] == "yes" if len(words) > 2 else True), where
        else:
            raise AssertionError(f"{where}: unknown verb {words[0]!r}")
    assert os.getcwd() == str(tmp_path)
