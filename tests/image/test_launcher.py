"""The launcher's decisions, without Docker: real planner, real hardware detection,
real files and a real loopback HTTP server for volume downloads."""
from __future__ import annotations

import hashlib
import http.server
import json
import subprocess
import sys
from pathlib import Path

import pytest

from packager.detect import detect_hardware
from packager.planner import plan_files, replan
import launch_steps as launcher
from launch_steps import LaunchError, Settings
from loopback_http import serving

ROOT = Path(__file__).resolve().parents[2]
SMOL = str(ROOT / "manifests" / "models" / "smollm2-135m-instruct.yaml")
GGUF_REF = "/opt/packager/model/SmolLM2-135M-Instruct.Q4_1.gguf"
CPU_CONFIG = {"family": "cpu", "runtimes": ["cpu"], "weights": {"mode": "baked", "dir": "/opt/packager/model"}}


@pytest.fixture(scope="module")
def cpu_plan() -> dict:
    return plan_files(SMOL, "cpu", model_ref=GGUF_REF).to_dict()


@pytest.fixture(scope="module")
def hardware():
    return detect_hardware()  # this machine: no GPU


def settings(**kw) -> Settings:
    base = dict(profile=None, host="127.0.0.1", port=8123, max_model_len=None, served_model_name=None)
    base.update(kw)
    return Settings(**base)


def test_cpu_image_on_cpu_selects_and_overrides_argv(cpu_plan, hardware):
    d = launcher.decide(cpu_plan, CPU_CONFIG, hardware, settings(served_model_name="smol"), replan)
    assert d.argv is not None
    argv = list(d.argv)
    assert argv[0] == sys.executable and argv[1:3] == ["-m", "runtimes.fallback"]
    assert argv[argv.index("--host") + 1] == "127.0.0.1"
    assert argv[argv.index("--port") + 1] == "8123"
    assert argv[argv.index("--served-model-name") + 1] == "smol"
    assert argv[argv.index("--model") + 1] == GGUF_REF
    assert argv.count("--port") == 1 and argv.count("--host") == 1
    assert d.plan["selected"]["name"] == cpu_plan["selected"]["name"]
    assert "selected" in d.table and cpu_plan["selected"]["name"] in d.table


def test_max_model_len_goes_through_the_planner(cpu_plan, hardware):
    d = launcher.decide(cpu_plan, CPU_CONFIG, hardware, settings(max_model_len=1024), replan)
    argv = list(d.argv)
    assert argv[argv.index("--max-model-len") + 1] == "1024"
    assert d.plan["selected"]["max_model_len"] == 1024


def test_pinned_profile_wins(cpu_plan, hardware):
    other = [c["name"] for c in cpu_plan["candidates"] if c["name"] != cpu_plan["selected"]["name"]]
    assert other, "the CPU plan should offer more than one profile"
    d = launcher.decide(cpu_plan, CPU_CONFIG, hardware, settings(profile=other[0]), replan)
    assert d.plan["selected"]["name"] == other[0]


def test_unknown_pinned_profile_lists_the_names(cpu_plan, hardware):
    with pytest.raises(LaunchError) as err:
        launcher.decide(cpu_plan, CPU_CONFIG, hardware, settings(profile="gpu-magic"), replan)
    msg = str(err.value)
    assert "gpu-magic" in msg
    for c in cpu_plan["candidates"]:
        assert c["name"] in msg


def test_image_plan_keeps_only_the_image_runtimes(cpu_plan):
    mixed = dict(cpu_plan, candidates=cpu_plan["candidates"] + [dict(cpu_plan["candidates"][0], name="vllm-x",
                                                                      runtime="vllm")])
    kept = launcher.image_plan(mixed, CPU_CONFIG)
    assert "vllm-x" not in [c["name"] for c in kept["candidates"]]
    assert kept["selected"]["name"] == cpu_plan["selected"]["name"]


def test_gpu_image_on_cpu_exits_with_one_clear_screen(tmp_path):
    plan = plan_files(str(ROOT / "manifests/models/llama-3.1-8b-instruct.yaml"),
                      str(ROOT / "manifests/hardware/nvidia-l4-x1.yaml"), model_ref="/opt/packager/model").to_dict()
    assert plan["selected"]["runtime"] == "vllm"
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    cfg = {"family": "vllm", "runtimes": ["vllm"], "weights": {"mode": "baked", "dir": "/opt/packager/model"}}
    (tmp_path / "image.json").write_text(json.dumps(cfg))
    proc = subprocess.run([sys.executable, "-m", "runtimes.launcher"], capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "PACKAGER_PLAN": str(tmp_path / "plan.json"),
                               "PACKAGER_IMAGE_CONFIG": str(tmp_path / "image.json"), "PYTHONPATH": str(ROOT)})
    assert proc.returncode == launcher.EXIT_NO_FIT, proc.stderr
    assert "no profile of this image fits" in proc.stderr
    assert "detected:" in proc.stderr and "CPU" in proc.stderr
    assert plan["selected"]["name"] in proc.stderr  # each image profile is named with its reason
    assert "incompatible" in proc.stdout


def test_bad_port_is_a_clear_error():
    with pytest.raises(LaunchError, match="PACKAGER_PORT"):
        Settings.from_env({"PACKAGER_PORT": "eighty"})
    s = Settings.from_env({})
    assert (s.host, s.port, s.profile) == ("0.0.0.0", 8000, None)


def test_set_flag_replaces_both_spellings_or_appends():
    argv = ["x", "--port", "1", "--host=a"]
    launcher.set_flag(argv, "--port", "2")
    launcher.set_flag(argv, "--host", "b")
    launcher.set_flag(argv, "--seed", "3")
    assert argv == ["x", "--port", "2", "--host=b", "--seed", "3"]


# -- volume weights ---------------------------------------------------------------

def _volume_config(files: dict, cache: Path) -> dict:
    return {"runtimes": ["cpu"], "cache_dir": str(cache),
            "weights": {"mode": "volume", "dir": "/opt/packager/model", "files": files, "source": {"kind": "local"}}}


def test_volume_mounted_weights_are_verified(tmp_path):
    mount = tmp_path / "mnt"
    mount.mkdir()
    (mount / "w.bin").write_bytes(b"weights")
    good = hashlib.sha256(b"weights").hexdigest()
    cfg = _volume_config({"w.bin": good}, tmp_path / "cache")
    assert launcher.ensure_weights(cfg, {"PACKAGER_MODEL_DIR": str(mount)}, log=lambda m: None) == str(mount)
    cfg = _volume_config({"w.bin": "0" * 64}, tmp_path / "cache")
    with pytest.raises(LaunchError, match="sha256"):
        launcher.ensure_weights(cfg, {"PACKAGER_MODEL_DIR": str(mount)}, log=lambda m: None)


def test_volume_without_weights_or_url_says_how_to_fix(tmp_path):
    cfg = _volume_config({"w.bin": "0" * 64}, tmp_path / "cache")
    with pytest.raises(LaunchError, match="PACKAGER_WEIGHTS_URL"):
        launcher.ensure_weights(cfg, {"PACKAGER_MODEL_DIR": str(tmp_path / "empty")}, log=lambda m: None)


class _Server(http.server.BaseHTTPRequestHandler):
    body = b"downloaded weights"
    seen_auth: list = []

    def do_GET(self):  # noqa: N802
        _Server.seen_auth.append(self.headers.get("Authorization"))
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args):
        pass


def test_volume_download_into_cache_with_token_and_checksum(tmp_path):
    with serving(_Server) as base:
        url = base + "/repo"
        good = hashlib.sha256(_Server.body).hexdigest()
        cfg = _volume_config({"sub/w.bin": good}, tmp_path / "cache")
        env = {"PACKAGER_MODEL_DIR": str(tmp_path / "empty"), "PACKAGER_WEIGHTS_URL": url,
               "PACKAGER_WEIGHTS_TOKEN": "tok-123"}
        got = launcher.ensure_weights(cfg, env, log=lambda m: None)
        assert Path(got, "sub/w.bin").read_bytes() == _Server.body
        assert _Server.seen_auth[-1] == "Bearer tok-123"
        assert not list(Path(got).rglob("*tok-123*"))
        bad = _volume_config({"other.bin": "f" * 64}, tmp_path / "cache2")
        with pytest.raises(LaunchError, match="expected"):
            launcher.ensure_weights(bad, env, log=lambda m: None)
        assert not (tmp_path / "empty" / "other.bin").exists()  # a bad download is not kept


def test_vllm_gets_only_our_middleware_on_its_path(tmp_path):
    import importlib.util
    import subprocess
    import sys

    from launch_steps import engine_environment

    argv = ["vllm", "serve", "/opt/packager/model", "--middleware", "runtimes.vllm_health.HealthAndKey"]
    env = engine_environment(argv, {"PACKAGER_CACHE_DIR": str(tmp_path), "PYTHONPATH": "/x"})
    first = env["PYTHONPATH"].split(":")[0]
    assert env["PYTHONPATH"].endswith(":/x")
    assert sorted(p.name for p in (tmp_path / "vllm-plugins" / "runtimes").iterdir()) == ["__init__.py", "api_keys.py", "vllm_health.py"]
    # A bare interpreter with only that path imports the middleware vLLM will load.
    code = "import runtimes.vllm_health as m; print(m.HealthAndKey and m.__file__)"
    out = subprocess.run([sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {first!r}); {code}"],
                         capture_output=True, text=True, check=True).stdout
    assert out.startswith(first)
    # The fallback runtime's environment is left alone.
    assert engine_environment(["python3", "-m", "runtimes.fallback"], {"A": "1"}) == {"A": "1"}
    assert importlib.util.find_spec("runtimes.vllm_health") is not None
