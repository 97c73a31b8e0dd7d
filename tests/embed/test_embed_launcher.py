"""The image's launcher on an embedding model's plan (dry run, PACKAGER_DRY_RUN=1): it re-plans with the
encoder stage and execs the fallback on the baked zip, or vLLM's pooling runner on a GPU."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from packager.planner import plan_files

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = ROOT / "manifests" / "models" / "all-minilm-l6-v2.yaml"
MODEL_REF = "/opt/packager/model"  # the zip is unpacked into the image (local_weights.locate)


def _dry_run(tmp_path: Path, hardware: str, family: str, env: dict | None = None) -> tuple[int, dict, str]:
    plan = plan_files(str(MANIFEST), hardware, model_ref=MODEL_REF).to_dict()
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    (tmp_path / "image.json").write_text(json.dumps({
        "family": family, "runtimes": [family], "port": 8000,
        "weights": {"mode": "baked", "dir": "/opt/packager/model", "files": {"config.json": "", "model.safetensors": ""}}}))
    base = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "PACKAGER_DRY_RUN": "1", "HOME": "/nonexistent",
            "PACKAGER_PLAN": str(tmp_path / "plan.json"), "PACKAGER_IMAGE_CONFIG": str(tmp_path / "image.json"),
            "PACKAGER_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-m", "runtimes.launcher"], capture_output=True, text=True, timeout=120,
                          env={**base, **(env or {})})
    return proc.returncode, json.loads(proc.stdout), proc.stderr


def test_cpu_launch_runs_the_fallback_on_the_unpacked_model(tmp_path):
    code, rec, err = _dry_run(tmp_path, "cpu", "cpu")
    argv = rec["argv"]
    assert rec["runtime"] == "cpu" and argv[1:3] == ["-m", "runtimes.fallback"], err
    assert argv[argv.index("--model") + 1] == MODEL_REF and argv[argv.index("--max-num-batched-tokens") + 1] == "4096"
    # outside the image the baked zip is missing: that is the one problem
    assert sorted(rec["weights"]["missing"]) == ["config.json", "model.safetensors"] and len(rec["problems"]) == 1, rec["problems"]


@pytest.mark.parametrize("hardware", ["nvidia-l4:1"])
def test_gpu_launch_runs_vllms_pooling_runner(tmp_path, hardware):
    code, rec, err = _dry_run(tmp_path, hardware, "vllm", {"PACKAGER_HARDWARE": hardware})
    argv = rec["argv"]
    assert rec["runtime"] == "vllm", err
    assert argv[argv.index("--runner") + 1] == "pooling" and argv[argv.index("--convert") + 1] == "embed"
    assert json.loads(argv[argv.index("--pooler-config") + 1])["seq_pooling_type"] == "MEAN"
    assert argv[argv.index("serve") + 1] == MODEL_REF  # a directory vLLM reads, never the zip


def test_build_context_carries_the_unpacked_model(tmp_path, run_cli):
    code, out, err = run_cli("build", "all-minilm-l6-v2", "--hardware", "cpu", "--no-image", "--out", str(tmp_path))
    assert code == 0, err
    ctx = tmp_path / "all-minilm-l6-v2" / "context"
    assert (ctx / "model" / "config.json").is_file() and (ctx / "model" / "1_Pooling" / "config.json").is_file()
    assert not (ctx / "model" / "model.zip").exists()
    plan = json.loads((tmp_path / "all-minilm-l6-v2" / "plan.json").read_text())
    argv = plan["selected"]["engine_argv"]
    assert argv[argv.index("--model") + 1] == MODEL_REF and plan["model_ref"] == MODEL_REF


def test_checksum_skips_the_hub_cache_inside_a_model_dir_only(tmp_path):
    from packager.local_weights import checksum

    root = tmp_path / ".cache" / "packager" / "unpacked" / "m"  # an unpacked model lives under ~/.cache
    (root / ".cache" / "huggingface").mkdir(parents=True)
    (root / "config.json").write_text("{}")
    (root / ".cache" / "huggingface" / "lock").write_text("x")
    assert [rel for rel, _ in checksum(root).files] == ["config.json"]


def test_kserve_objects_carry_the_pooling_argv(tmp_path, run_cli):
    import yaml

    out = tmp_path / "ks.yaml"
    code, _, err = run_cli("kserve", "all-minilm-l6-v2", "--hardware", "nvidia-l4:1", "--weights", "baked",
                           "--out", str(out))
    assert code == 0, err
    plans = [json.loads(v) for o in yaml.safe_load_all(out.read_text()) if o and o["kind"] == "ConfigMap"
             for k, v in o["data"].items() if k.endswith(".json")]
    argv = plans[0]["selected"]["engine_argv"]
    assert argv[argv.index("serve") + 1] == MODEL_REF and argv[argv.index("--runner") + 1] == "pooling"
    assert plans[0]["model"]["task"] == "embed"
