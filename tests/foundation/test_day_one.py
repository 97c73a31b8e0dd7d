"""Issue 25's smaller points: commands grouped in `--help` and flags without a `<bool>` type, `cost` accepted
wherever an objective is, a wrong --profile says why it is not in the plan, a Hub source without
huggingface_hub names the extra, the "ample" threshold explained."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


def cli(*args: str, cwd: Path = REPO, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "packager.cli", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "100", **(env or {})}, timeout=300)


def test_help_groups_the_commands_plan_package_deploy_supply_chain():
    out = cli("--help").stdout
    panels = ["Plan", "Package", "Deploy and serve", "Supply chain"]
    at = [out.index(f"─ {p} ") for p in panels]
    assert at == sorted(at) and "─ Commands " not in out
    assert out.index(" profiles ") < at[1] < out.index(" build ") < at[2] < out.index(" deploy ") < at[3] < out.index(" bundle ")
    for cmd in ("chart", "deploy", "init", "profiles"):
        assert "<bool>" not in cli(cmd, "--help").stdout, cmd


def test_cost_is_an_objective_everywhere(tmp_path):
    assert "cost" in cli("chart", "--help").stdout
    manifest = yaml.safe_load((REPO / "manifests/models/llama-3.1-8b-instruct.yaml").read_text())
    manifest["serving"]["objective"] = "cost"
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(manifest))
    r = cli("validate", str(path))
    assert r.returncode == 0, r.stderr
    r = cli("profiles", str(path), "--hardware", "nvidia-h100-sxm-80gb:8")
    assert r.returncode == 0 and "Objective cost" in r.stdout and "the fewest devices" in r.stdout


@pytest.mark.parametrize("profile, why", [
    ("vllm-bf16-tp16-pp1-throughput", "it needs tp x pp = 16 devices; the plan's hardware has 8"),
    ("cpu-fp32-tp1-pp1-throughput", "cpu profiles are planned for CPU hardware only"),
    ("vllm-int3-tp1-pp1-latency", "precision int3 is not in the manifest's serving.precisions"),
    ("fastest", "profile names read RUNTIME-PRECISION"),
])
def test_a_profile_not_in_the_plan_says_why(tmp_path, profile, why):
    r = cli("chart", "llama-3.1-8b-instruct", "--hardware", "nvidia-h100-sxm-80gb:8", "--profile", profile,
            "--out", str(tmp_path))
    assert r.returncode == 2 and why in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_a_hub_source_without_huggingface_hub_names_the_extra(tmp_path):
    hidden = tmp_path / "hide" / "huggingface_hub"
    hidden.mkdir(parents=True)
    (hidden / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'huggingface_hub'\", name='huggingface_hub')\n")
    r = subprocess.run([sys.executable, "-m", "packager.cli", "init", "some-org/some-model"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": f"{tmp_path / 'hide'}{os.pathsep}{REPO}"})
    assert r.returncode == 2 and "pip install 'packager[hub]'" in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_the_ample_threshold_is_explained():
    r = cli("profiles", "llama-3.1-8b-instruct", "--hardware", "nvidia-l4:1")
    assert "room for 8, what the planner calls ample: rules.yaml ample_sequences" in r.stdout
