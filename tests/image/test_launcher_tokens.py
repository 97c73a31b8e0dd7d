"""The download tokens end with the weights step: the engine (fallback or vLLM), and ray on a
LeaderWorkerSet leader, start without HF_TOKEN, HUGGING_FACE_HUB_TOKEN, HF_TOKEN_PATH or
PACKAGER_WEIGHTS_TOKEN in their environment. Checked on the launch record (the dry run, both
runtimes) and on a real engine process's /proc/PID/environ after the launcher exec'd it."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from runtimes.launch.engine_env import DOWNLOAD_SECRETS

from test_launcher_dry_run import GGUF_REF, LWS_PROFILE, ROOT, dry_run, files  # noqa: F401 (files: a fixture)

TOKENS = {"HF_TOKEN": "hf_canary_download_1", "HUGGING_FACE_HUB_TOKEN": "hf_canary_download_2",
          "PACKAGER_WEIGHTS_TOKEN": "mirror_canary_3", "HF_TOKEN_PATH": "/var/run/secrets/packager/hf/token"}


def test_the_launch_record_of_either_runtime_holds_no_download_token(files, tmp_path):
    cpu = {"PACKAGER_PLAN": str(files / "cpu-plan.json"), "PACKAGER_IMAGE_CONFIG": str(files / "cpu-image.json"),
           "PACKAGER_API_KEY": "sk-kept"}
    vllm = {"PACKAGER_PLAN": str(files / "vllm-plan.json"), "PACKAGER_IMAGE_CONFIG": str(files / "vllm-image.json"),
            "PACKAGER_HARDWARE": "nvidia-h100-sxm-80gb:8x2", "PACKAGER_PROFILE": LWS_PROFILE,
            "PACKAGER_MODEL_DIR": str(tmp_path / "pvc"), "LWS_LEADER_ADDRESS": "llama-0.llama.default",
            "LWS_GROUP_SIZE": "2", "LWS_WORKER_INDEX": "0", "PACKAGER_API_KEY": "sk-kept"}
    for env, runtime in ((cpu, "cpu"), (vllm, "vllm")):
        code, rec, err = dry_run({**env, **TOKENS})
        assert rec["runtime"] == runtime and rec["argv"], err
        assert set(DOWNLOAD_SECRETS) <= set(TOKENS) and not set(rec["env"]) & set(TOKENS), rec["env"]
        assert "VLLM_API_KEY" in rec["env"]  # the engine's own key is still handed on
    # The vLLM pod downloads from the Hub with that token: the record still says it would.
    assert rec["weights"]["would_download_from"].startswith("hf://meta-llama/")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode().split("\0") if "=" in item)


def test_the_exec_d_engine_process_has_no_download_token(files, tmp_path):
    """The real launcher, the real fallback server: the claim already holds the weights (volume mode),
    so the launcher verifies them, drops the tokens and execs the engine in its own process."""
    from tests.runtime.conftest import gguf_path

    claim = tmp_path / "claim"
    claim.mkdir()
    (claim / Path(GGUF_REF).name).symlink_to(gguf_path())
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT), "HOME": str(tmp_path), "HF_HUB_OFFLINE": "1",
           "PACKAGER_PLAN": str(files / "cpu-plan.json"), "PACKAGER_IMAGE_CONFIG": str(files / "cpu-image.json"),
           "PACKAGER_WEIGHTS_MODE": "volume", "PACKAGER_MODEL_DIR": str(claim), "PACKAGER_CACHE_DIR": str(tmp_path / "c"),
           "PACKAGER_HOST": "127.0.0.1", "PACKAGER_PORT": str(_free_port()), **TOKENS}
    log = open(tmp_path / "launcher.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "runtimes.launcher"], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while b"runtimes.fallback" not in Path(f"/proc/{proc.pid}/cmdline").read_bytes():
            assert proc.poll() is None, (tmp_path / "launcher.log").read_text()
            assert time.monotonic() < deadline, "the launcher did not exec the engine"
            time.sleep(0.05)
        engine = _environ(proc.pid)  # the same PID: the launcher exec'd the engine
    finally:
        proc.terminate()
        proc.wait(60)
        log.close()
    assert engine["PACKAGER_MODEL_DIR"] == str(claim) and engine["PACKAGER_HOST"] == "127.0.0.1"
    leaked = {k: v for k, v in engine.items() if k in TOKENS or v in TOKENS.values()}
    assert not leaked, f"the engine's environment holds {sorted(leaked)}"
