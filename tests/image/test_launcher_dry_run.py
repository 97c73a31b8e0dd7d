"""The launcher's dry run (PACKAGER_DRY_RUN=1, NIM's `nim-serve --dry-run`): one JSON launch record
on stdout, the real exit code, nothing written outside a temp dir; PACKAGER_HARDWARE stands in for
detection, so GPU and multi-node profiles are rehearsed here. Real planner, real subprocesses."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from packager.planner import plan_files
from runtimes.launch.engine_env import engine_environment, middleware_importable
from runtimes.layout import CACHE_DIR, RECORD_FIELDS, REDACTED

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "manifests" / "models"
GGUF_REF = "/opt/packager/model/SmolLM2-135M-Instruct.Q4_1.gguf"
KEY = "sk-dry-run-canary-123"
LWS_PROFILE = "vllm-bf16-tp8-pp2-throughput"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("dry")
    cpu = plan_files(str(MODELS / "smollm2-135m-instruct.yaml"), "cpu", model_ref=GGUF_REF).to_dict()
    (d / "cpu-plan.json").write_text(json.dumps(cpu))
    (d / "cpu-image.json").write_text(json.dumps({
        "family": "cpu", "runtimes": ["cpu"], "port": 8000,
        "weights": {"mode": "baked", "dir": "/opt/packager/model", "files": {Path(GGUF_REF).name: ""}}}))
    big = plan_files(str(MODELS / "llama-3.1-70b-instruct.yaml"), "nvidia-h100-sxm-80gb:8x2",
                     model_ref="/opt/packager/model").to_dict()
    (d / "vllm-plan.json").write_text(json.dumps(big))
    (d / "vllm-image.json").write_text(json.dumps({
        "family": "vllm", "runtimes": ["vllm"], "port": 8000,
        "weights": {"mode": "volume", "dir": "/opt/packager/model", "files": {},
                    "source": {"kind": "huggingface", "repo": "meta-llama/Llama-3.1-70B-Instruct", "revision": "a" * 40}}}))
    return d


def dry_run(env: dict, path: str = "/usr/bin:/bin") -> tuple[int, dict, str]:
    base = {"PATH": path, "PYTHONPATH": str(ROOT), "PACKAGER_DRY_RUN": "1", "HOME": "/nonexistent"}
    proc = subprocess.run([sys.executable, "-m", "runtimes.launcher"], capture_output=True, text=True, timeout=120,
                          env={**base, **env})
    lines = proc.stdout.strip().splitlines()
    assert proc.stdout.strip().startswith("{") and proc.stdout.strip().endswith("}"), proc.stdout + proc.stderr
    return proc.returncode, json.loads(proc.stdout), proc.stderr + "\n".join(lines[:0])


def test_cpu_record_is_one_json_object_with_every_field(files, tmp_path):
    cache, vol = tmp_path / "cache", tmp_path / "vol"
    code, rec, err = dry_run({"PACKAGER_PLAN": str(files / "cpu-plan.json"),
                              "PACKAGER_IMAGE_CONFIG": str(files / "cpu-image.json"),
                              "PACKAGER_API_KEY": KEY, "PACKAGER_CACHE_DIR": str(cache), "PACKAGER_PORT": "8123"})
    assert code == 0, err
    assert list(rec) == list(RECORD_FIELDS)
    assert rec["schema"] == 1 and rec["role"] == "server" and rec["runtime"] == "cpu"
    assert rec["plan_source"] == str(files / "cpu-plan.json") and rec["hardware_source"] == "detected"
    assert rec["argv"][0] == sys.executable and rec["argv"][1:3] == ["-m", "runtimes.fallback"]
    assert rec["argv"][rec["argv"].index("--port") + 1] == "8123"
    assert rec["model_path"] == GGUF_REF and rec["weights"]["mode"] == "baked"
    assert rec["env"]["PACKAGER_API_KEY"] == REDACTED and rec["env"]["VLLM_API_KEY"] == REDACTED
    assert KEY not in json.dumps(rec) and KEY not in err
    assert "detected" in err and "selected" in err  # the human part goes to stderr
    # In the image the baked weights would be under /opt/packager/model; here they are not: one problem.
    assert rec["weights"]["missing"] == [Path(GGUF_REF).name] and not rec["ok"] and len(rec["problems"]) == 1
    assert not cache.exists() and not vol.exists()


def test_a_pinned_profile_that_cannot_run_here_exits_3_with_the_record(files):
    env = {"PACKAGER_PLAN": str(files / "vllm-plan.json"), "PACKAGER_IMAGE_CONFIG": str(files / "vllm-image.json"),
           "PACKAGER_HARDWARE": "nvidia-l4:1", "PACKAGER_PROFILE": LWS_PROFILE}
    code, rec, err = dry_run(env)
    assert code == 3, err
    assert rec["ok"] is False and rec["exit_code"] == 3 and rec["profile"] == LWS_PROFILE
    assert rec["problems"] and LWS_PROFILE in rec["problems"][0] and rec["argv"] == []
    code, rec, _ = dry_run(dict(env, PACKAGER_PROFILE="no-such-profile"))
    assert code == 2 and "no-such-profile" in rec["problems"][0]


def test_lws_leader_and_worker_start_through_the_launcher(files, tmp_path):
    env = {"PACKAGER_PLAN": str(files / "vllm-plan.json"), "PACKAGER_IMAGE_CONFIG": str(files / "vllm-image.json"),
           "PACKAGER_HARDWARE": "nvidia-h100-sxm-80gb:8x2", "PACKAGER_PROFILE": LWS_PROFILE,
           "PACKAGER_MODEL_DIR": str(tmp_path / "pvc"), "LWS_LEADER_ADDRESS": "llama-0.llama.default",
           "LWS_GROUP_SIZE": "2"}
    code, leader, err = dry_run(dict(env, LWS_WORKER_INDEX="0"))
    assert code == 0 and leader["ok"], err + json.dumps(leader["problems"])
    assert leader["role"] == "leader" and leader["profile"] == LWS_PROFILE
    assert leader["prelude"][0][:3] == ["ray", "start", "--head"]
    assert leader["argv"][:3] == ["vllm", "serve", str(tmp_path / "pvc")]  # the local path, never a repo id
    assert "--distributed-executor-backend" in leader["argv"] and "--revision" not in leader["argv"]
    assert leader["middleware"] == ["runtimes.vllm_health"]
    assert leader["pythonpath"][0] == f"{CACHE_DIR}/vllm-plugins"
    assert leader["weights"] == {"mode": "volume", "dir": str(tmp_path / "pvc"), "present": False, "missing": [],
                                 "would_download_from": f"hf://meta-llama/Llama-3.1-70B-Instruct@{'a' * 40}"}
    code, worker, err = dry_run(dict(env, LWS_WORKER_INDEX="1"))
    assert code == 0 and worker["ok"], err
    assert worker["role"] == "worker" and worker["prelude"] == []
    assert worker["argv"] == ["ray", "start", "--address=llama-0.llama.default:6379", "--block", "--disable-usage-stats"]
    assert not (tmp_path / "pvc").exists()  # a dry run downloads nothing


def test_the_middleware_imports_under_the_engines_own_python(tmp_path):
    """The check the rehearsal relies on: a `vllm` whose interpreter is a bare Python (no
    project on its path) imports our middleware only through the launcher's PYTHONPATH."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "venv")], check=True)
    bindir = tmp_path / "venv" / "bin"
    fake = bindir / "vllm"  # a console script, as pip writes vLLM's
    fake.write_text(f"#!{bindir / 'python'}\n")
    fake.chmod(0o755)
    argv = ["vllm", "serve", "/m", "--middleware", "runtimes.vllm_health.HealthAndKey"]
    env = {"PATH": f"{bindir}:/usr/bin:/bin"}
    ok, why = middleware_importable(argv, env)  # what the old leader did: vllm with nothing on its path
    assert ok is False and "runtimes" in why
    ok, why = middleware_importable(argv, engine_environment(argv, env, cache_dir=str(tmp_path / "c")))
    assert ok is True, why
    ok, why = middleware_importable(argv[:3] + ["--middleware", "runtimes.vllm_health.nope"],
                                    engine_environment(argv, env, cache_dir=str(tmp_path / "c")))
    assert ok is False and "nope" in why
    # No engine interpreter here (a rehearsal outside the image): found on its PYTHONPATH alone, or not.
    absent = ["vllm-absent"] + argv[1:]
    assert middleware_importable(absent, env)[0] is False
    assert middleware_importable(absent, engine_environment(argv, env, cache_dir=str(tmp_path / "c")))[0] is True


def test_device_forces_the_family_and_bad_values_are_one_line(files):
    env = {"PACKAGER_PLAN": str(files / "cpu-plan.json"), "PACKAGER_IMAGE_CONFIG": str(files / "cpu-image.json")}
    code, rec, _ = dry_run(dict(env, PACKAGER_DEVICE="cpu", PACKAGER_HARDWARE="cpu"))
    assert code == 0 and rec["device"] == "cpu" and rec["runtime"] == "cpu"
    code, rec, err = dry_run(dict(env, PACKAGER_DEVICE="tpu"))
    assert code == 2 and "PACKAGER_DEVICE" in rec["problems"][0] and "Traceback" not in err


def test_a_mounted_plan_with_a_host_path_still_hands_the_engine_the_image_path(files, tmp_path):
    """A plan written off the image (the build host's weights path in model_ref) cannot send the
    engine to a path that exists only on that host."""
    plan = json.loads((files / "cpu-plan.json").read_text())
    plan["model_ref"] = "/root/somewhere/SmolLM2-135M-Instruct.Q4_1.gguf"
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    code, rec, err = dry_run({"PACKAGER_PLAN": str(tmp_path / "plan.json"),
                              "PACKAGER_IMAGE_CONFIG": str(files / "cpu-image.json")})
    assert code == 0, err
    assert rec["model_path"] == GGUF_REF and "/root/somewhere" not in json.dumps(rec)


def test_the_charts_weights_mode_wins_over_the_images(files, tmp_path):
    """A volume mounted over a baked image's model dir hides its weights: with the chart's
    PACKAGER_WEIGHTS_MODE=volume the launcher fills the claim instead of starting without them."""
    env = {"PACKAGER_PLAN": str(files / "cpu-plan.json"), "PACKAGER_IMAGE_CONFIG": str(files / "cpu-image.json"),
           "PACKAGER_WEIGHTS_MODE": "volume", "PACKAGER_MODEL_DIR": str(tmp_path / "claim")}
    code, rec, _ = dry_run(env)
    assert code == 0 and rec["weights"]["mode"] == "volume" and rec["weights"]["dir"] == str(tmp_path / "claim")
    assert rec["model_path"] == str(tmp_path / "claim" / Path(GGUF_REF).name)
    assert rec["weights"]["would_download_from"] is None and not rec["ok"]  # nowhere to download from: said so
    code, rec, _ = dry_run(dict(env, PACKAGER_WEIGHTS_URL="http://127.0.0.1:9/repo"))
    assert rec["ok"] and rec["weights"]["would_download_from"] == "http://127.0.0.1:9/repo"
    assert not (tmp_path / "claim").exists()


@pytest.mark.parametrize("body", ['{"model": {"name": "x"}, "candidates": [{"name": "a"}]}', "[1]"])
def test_a_mounted_plan_packager_did_not_write_is_one_line_exit_2(files, tmp_path, body):
    (tmp_path / "plan.json").write_text(body)
    code, rec, err = dry_run({"PACKAGER_PLAN": str(tmp_path / "plan.json"),
                              "PACKAGER_IMAGE_CONFIG": str(files / "cpu-image.json"), "PACKAGER_HARDWARE": "cpu"})
    assert code == 2 and "Traceback" not in err
    assert not rec["ok"] and "is not a packager plan" in rec["problems"][0]
