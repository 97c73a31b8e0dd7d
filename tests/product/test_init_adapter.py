"""`packager init ADAPTER_DIR` (issue 22, item 1): a PEFT adapter directory gives the `adapters:` entry of a
model manifest (name, source path relative to the manifest, rank, target_modules, sha256 per file) which,
pasted into SmolLM2's manifest, plans at once; what is not a servable adapter exits 2 naming the field."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from runtimes.digests import sha256_file
from tests.conftest import MODELS
from tests.lora_adapters import SMOL, write_adapter

ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "packager.cli", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)


def test_init_drafts_the_adapters_entry_and_it_plans(tmp_path):
    adapter = write_adapter(tmp_path / "adapters" / "SQL_v2", SMOL, 3, rank=16, targets=("q_proj", "v_proj", "down_proj"))
    out = tmp_path / "manifests" / "sql.yaml"
    r = cli("init", str(adapter), "--out", str(out), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    entry = yaml.safe_load(out.read_text())["adapters"][0]
    assert entry == {"name": "sql-v2", "source": {"path": "../adapters/SQL_v2", "sha256": {
        "adapter_config.json": sha256_file(adapter / "adapter_config.json"),
        "adapter_model.safetensors": sha256_file(adapter / "adapter_model.safetensors")}},
        "rank": 16, "target_modules": ["q_proj", "v_proj", "down_proj"]}
    assert "HuggingFaceTB/SmolLM2-135M-Instruct" in out.read_text()  # the base it was trained on, as a comment
    # pasted into the base model's manifest (beside the entry, so the relative path holds), it plans
    doc = yaml.safe_load((MODELS / "smollm2-135m-instruct.yaml").read_text())
    doc["adapters"] = [entry]
    model = out.parent / "model.yaml"
    model.write_text(yaml.safe_dump(doc, sort_keys=False))
    r = cli("profiles", str(model), "--hardware", "cpu", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    planned = json.loads(r.stdout)["model"]["adapters"][0]
    assert (planned["name"], planned["rank"]) == ("sql-v2", 16)
    # stdout, with the served name given
    r = cli("init", str(adapter), "--served-name", "team/sql", cwd=tmp_path)
    assert r.returncode == 0 and yaml.safe_load(r.stdout)["adapters"][0]["name"] == "team/sql"
    assert yaml.safe_load(r.stdout)["adapters"][0]["source"]["path"] == "adapters/SQL_v2"


def test_a_directory_that_is_not_an_adapter_exits_2(tmp_path):
    bad = write_adapter(tmp_path / "ia3", SMOL, 1, rank=4, extra_config={"peft_type": "IA3"})
    r = cli("init", str(bad), cwd=tmp_path)
    assert r.returncode == 2 and "peft_type" in r.stderr and "Traceback" not in r.stderr and not r.stdout
    head = write_adapter(tmp_path / "head", SMOL, 1, rank=4, weights={
        "base_model.model.lm_head.lora_A.weight": __import__("torch").zeros(4, 576)})
    r = cli("init", str(head), cwd=tmp_path)
    assert r.returncode == 2 and "lm_head" in r.stderr and "Traceback" not in r.stderr
    (tmp_path / "nothing").mkdir()
    r = cli("init", str(tmp_path / "nothing"), cwd=tmp_path)
    assert r.returncode == 2 and "adapter_config.json" in r.stderr and "Traceback" not in r.stderr
