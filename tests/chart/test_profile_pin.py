"""--profile pins a compatible profile on chart/build/deploy; one image name for build and chart;
a quantized variant's checkpoint travels with its pinned revision and lives in its own directory."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from chart_checks import REPO

MODELS = REPO / "manifests" / "models"
LLAMA70 = MODELS / "llama-3.1-70b-instruct.yaml"
SMOL = MODELS / "smollm2-135m-instruct.yaml"


def packager(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "packager.cli", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def values_of(chart_root: Path) -> dict:
    """The chart's values with its plan (plan.json beside values.yaml since issue 25) under `plan`."""
    (chart,) = [p for p in chart_root.iterdir() if p.is_dir()]
    values = yaml.safe_load((chart / "values.yaml").read_text())
    return dict(values, plan=json.loads((chart / "plan.json").read_text()))


def test_chart_profile_pins_the_multi_node_profile(tmp_path):
    """Before --profile only a test's pinned replan could render a LeaderWorkerSet chart."""
    pinned = "vllm-bf16-tp8-pp2-throughput"
    r = packager("chart", str(LLAMA70), "--hardware", "nvidia-h100-sxm-80gb:8x2", "--profile", pinned,
                 "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    values = values_of(tmp_path)
    assert values["plan"]["selected"]["name"] == pinned
    assert values["plan"]["candidates"][0]["name"] == pinned
    assert values["plan"]["why"].endswith("pinned by --profile")
    assert values["plan"]["selected"]["nodes"] == 2


def test_deploy_dry_run_renders_the_pinned_leaderworkerset():
    r = packager("deploy", str(LLAMA70), "--hardware", "nvidia-h100-sxm-80gb:8x2", "--profile",
                 "vllm-bf16-tp8-pp2-throughput", "--dry-run")
    assert r.returncode == 0, r.stderr
    kinds = [d["kind"] for d in yaml.safe_load_all(r.stdout) if d]
    assert "LeaderWorkerSet" in kinds and "Deployment" not in kinds


def test_unknown_profile_is_exit_2_naming_the_compatible_ones(tmp_path):
    r = packager("chart", str(LLAMA70), "--hardware", "nvidia-h100-sxm-80gb:1", "--profile", "vllm-bf16-tp9",
                 "--out", str(tmp_path))
    assert r.returncode == 2
    assert "Traceback" not in r.stderr and "--profile" in r.stderr
    assert "vllm-awq-int4-tp1-pp1-throughput" in r.stderr  # a compatible one is named
    assert not any(tmp_path.iterdir())  # nothing written


def test_incompatible_profile_says_why(tmp_path):
    plan = json.loads(packager("profiles", str(LLAMA70), "--hardware", "nvidia-h100-sxm-80gb:1", "--json").stdout)
    rejected = plan["rejected"][0]
    r = packager("build", str(LLAMA70), "--hardware", "nvidia-h100-sxm-80gb:1", "--profile", rejected["name"],
                 "--no-image", "--out", str(tmp_path))
    assert r.returncode == 2, r.stderr
    assert "not compatible" in r.stderr and rejected["reasons"][0][:40] in r.stderr


def test_chart_without_build_names_the_image_build_tags(tmp_path):
    """`chart` and `deploy` pointed at :0.1.0 while `build` tagged :0.1.0-cpu: ImagePullBackOff."""
    b = packager("build", str(SMOL), "--hardware", "cpu", "--no-image", "--out", str(tmp_path / "b"))
    assert b.returncode == 0, b.stderr
    built = yaml.safe_load(next((tmp_path / "b").glob("*/chart/*/values.yaml")).read_text())["image"]
    c = packager("chart", str(SMOL), "--hardware", "cpu", "--out", str(tmp_path / "c"))
    assert c.returncode == 0, c.stderr
    charted = values_of(tmp_path / "c")["image"]
    assert (charted["repository"], charted["tag"]) == (built["repository"], built["tag"])
    assert charted["tag"].endswith("-cpu")
    d = packager("deploy", str(SMOL), "--hardware", "cpu", "--dry-run")
    assert f"image: \"{built['repository']}:{built['tag']}\"" in d.stdout or \
        f"image: {built['repository']}:{built['tag']}" in d.stdout


def test_variant_argv_pins_its_revision():
    """The planner's pick for 70B on one H100 is the AWQ variant: `vllm serve REPO` with no --revision
    fetched whatever `main` is today."""
    plan = json.loads(packager("profiles", str(LLAMA70), "--hardware", "nvidia-h100-sxm-80gb:1", "--json").stdout)
    sel = plan["selected"]
    manifest = yaml.safe_load(LLAMA70.read_text())
    variant = manifest["serving"]["quantized_variants"][0]["source"]
    assert sel["quantized_variant"] == "awq-int4"
    assert sel["weights_source"]["revision"] == variant["revision"]
    argv = sel["engine_argv"]
    assert argv[2] == variant["repo"]
    assert argv[argv.index("--revision") + 1] == variant["revision"]


def _tiny_model_with_variant(tmp_path: Path) -> Path:
    base, awq = tmp_path / "base", tmp_path / "awq"
    for d, payload in ((base, b"base-weights" * 100), (awq, b"awq-weights" * 10)):
        d.mkdir()
        (d / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"]}))
        (d / "model.safetensors").write_bytes(payload)
    manifest = yaml.safe_load(LLAMA70.read_text())
    manifest["name"] = "tiny-variant"
    manifest["source"] = {"path": str(base), "format": "safetensors"}
    manifest["serving"]["quantized_variants"][0]["source"] = {"path": str(awq), "format": "safetensors"}
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(manifest))
    return path


def test_build_bakes_the_pinned_variants_files_not_the_base_checkpoint(tmp_path):
    manifest = _tiny_model_with_variant(tmp_path)
    out = tmp_path / "out"
    r = packager("build", str(manifest), "--hardware", "nvidia-h100-sxm-80gb:1", "--profile",
                 "vllm-awq-int4-tp1-pp1-throughput", "--no-image", "--out", str(out))
    assert r.returncode == 0, r.stderr
    build = out / "tiny-variant"
    model_dir = build / "context" / "model"
    baked = sorted(str(p.relative_to(model_dir)) for p in model_dir.rglob("*") if p.is_file())
    assert baked == ["variants/awq-int4/config.json", "variants/awq-int4/model.safetensors"]
    plan = json.loads((build / "plan.json").read_text())
    argv = plan["selected"]["engine_argv"]
    assert argv[2] == "/opt/packager/model/variants/awq-int4" and "--revision" not in argv
    # the image's plan holds only profiles that run on the checkpoint it carries
    assert {c["quantized_variant"] for c in plan["candidates"]} == {"awq-int4"}
    config = json.loads((build / "context" / "image.json").read_text())
    assert config["weights"]["dir"] == "/opt/packager/model/variants/awq-int4"
    assert sorted(config["weights"]["files"]) == ["config.json", "model.safetensors"]
    dockerfile = (build / "context" / "Dockerfile").read_text()
    assert "variants/awq-int4/model.safetensors" in dockerfile  # the build re-checks the baked bytes
    assert str(tmp_path) not in (build / "context" / "plan.json").read_text()  # no host path in the image


def test_chart_of_a_local_model_carries_no_host_path(tmp_path):
    manifest = _tiny_model_with_variant(tmp_path)
    r = packager("deploy", str(manifest), "--hardware", "nvidia-h100-sxm-80gb:1", "--dry-run")
    assert r.returncode == 0, r.stderr
    manifests = r.stdout[r.stdout.index("---\n"):]  # the header before them repeats the user's own command
    assert "ConfigMap" in manifests and str(tmp_path) not in manifests
