"""The README's LoRA adapters commands, run as shown (issue 22, item 4) against an adapter made here
(seeded random PEFT tensors for SmolLM2, never downloaded) at ./adapters/sql. The long-running ones are run
by their own tests with the same words: `serve` and the image `build` by tests/image/test_image_lora.py
(the build there adds only --out, --tag and --base-image; here it also renders the context with --no-image),
`bundle` by tests/supply/test_bundle_adapters.py (adding its registry, base image and tag)."""
from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import yaml

from runtimes.layout import adapter_dir
from tests.lora_adapters import SMOL, write_adapter

ROOT = Path(__file__).resolve().parents[2]
RUN_ELSEWHERE = {"serve": "tests/image/test_image_lora.py", "bundle": "tests/supply/test_bundle_adapters.py"}


def readme_commands() -> list[list[str]]:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## LoRA adapters"):]
    section = section[:section.index("\n## ", 1)]
    return [shlex.split(line.strip()) for line in section.splitlines() if re.match(r"^    packager ", line)]


def cli(words: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "packager.cli", *words[1:]], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}, timeout=600)


def test_every_adapters_command_the_readme_shows_runs(tmp_path):
    commands = readme_commands()
    assert [c[1] for c in commands] == ["init", "serve", "build", "chart", "kserve", "bundle"]
    write_adapter(tmp_path / "adapters" / "sql", SMOL, 1, rank=8)
    for words in commands:
        verb = words[1]
        if verb in RUN_ELSEWHERE:
            source = (ROOT / RUN_ELSEWHERE[verb]).read_text()
            assert f'"{verb}", "smollm2-135m-instruct"' in source and '"--adapter"' in source, verb
            continue
        if ">" in words:  # a shell redirect, as the README shows it
            words, target = words[:words.index(">")], words[words.index(">") + 1]
        else:
            target = None
        if verb == "build":
            words = [*words, "--no-image", "--out", "build-out"]  # the image itself: tests/image/test_image_lora.py
        r = cli(words, tmp_path)
        assert r.returncode == 0, f"{' '.join(words)}\n{r.stderr[-3000:]}"
        if target:
            (tmp_path / target).write_text(r.stdout)
    entry = yaml.safe_load((tmp_path / "sql-adapter.yaml").read_text())["adapters"][0]
    assert (entry["name"], entry["rank"], entry["source"]["path"]) == ("sql", 8, "adapters/sql")
    kserve = [o for o in yaml.safe_load_all(cli(commands[4], tmp_path).stdout) if o][-1]
    assert kserve["spec"]["model"]["lora"]["adapters"] == [{"name": "sql", "uri": f"file://{adapter_dir('sql')}"}]
    image_plan = json.loads((tmp_path / "build-out" / "smollm2-135m-instruct" / "context" / "plan.json").read_text())
    assert f"sql={adapter_dir('sql')}" in image_plan["selected"]["engine_argv"]
