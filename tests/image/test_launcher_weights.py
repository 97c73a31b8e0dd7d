"""Volume-mode weights land on the weights volume (the chart's PVC, PACKAGER_MODEL_DIR), once:
replicas sharing a ReadWriteMany claim start together and exactly one downloads (an flock on the
claim), a restart downloads nothing (the digest marker), and the engine is handed the local path.
Real processes, a real loopback HTTP mirror; no mocks."""
from __future__ import annotations

import hashlib
import http.server
import json
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

import launch_steps as launcher
from runtimes.layout import WEIGHTS_MARKER
from loopback_http import serving

ROOT = Path(__file__).resolve().parents[2]
FILES = {"model.safetensors": bytes(range(256)) * 4096, "config.json": b'{"model_type": "llama"}'}
DIGESTS = {rel: hashlib.sha256(body).hexdigest() for rel, body in FILES.items()}


@contextmanager
def mirror(seen: list, delay_s: float = 0.0):
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            rel = self.path.split("/repo/", 1)[-1]
            seen.append(rel)
            body = FILES.get(rel)
            if body is None:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            half = len(body) // 2
            self.wfile.write(body[:half])
            self.wfile.flush()
            time.sleep(delay_s)  # a slow transfer: the other replicas start meanwhile
            self.wfile.write(body[half:])

        def log_message(self, *args):
            pass

    with serving(H) as url:
        yield url + "/repo"


def config(cache: Path) -> dict:
    return {"runtimes": ["cpu"], "cache_dir": str(cache),
            "weights": {"mode": "volume", "dir": "/opt/packager/model", "files": DIGESTS,
                        "source": {"kind": "huggingface", "repo": "org/model", "revision": "c" * 40}}}


REPLICA = """
import json, sys
from runtimes.launch.weights import base_dir, ensure, spec_for, target_dir
cfg, env = json.loads(sys.argv[1]), json.loads(sys.argv[2])
spec = spec_for(None, {}, cfg, env)
target = target_dir(spec, base_dir(cfg, env))
ensure(spec, target, env, log=lambda m: print(m, file=sys.stderr))
print(target)
"""


def test_replicas_sharing_a_claim_download_once_into_it(tmp_path):
    seen: list = []
    claim, cache = tmp_path / "claim", tmp_path / "cache"
    with mirror(seen, delay_s=1.0) as url:
        env = {"PACKAGER_MODEL_DIR": str(claim), "PACKAGER_WEIGHTS_URL": url}
        procs = [subprocess.Popen([sys.executable, "-c", REPLICA, json.dumps(config(cache)), json.dumps(env)],
                                  cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(3)]
        outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    assert {o[0].strip() for o in outs} == {str(claim)}  # every replica hands the engine the claim's path
    assert sorted(seen) == sorted(FILES), seen  # each file fetched exactly once, whatever the race
    assert sum("waiting for it" in o[1] for o in outs) >= 1, outs  # the others waited on the lock
    for rel, body in FILES.items():
        assert (claim / rel).read_bytes() == body
    marker = json.loads((claim / WEIGHTS_MARKER).read_text())
    assert {rel: f["sha256"] for rel, f in marker["files"].items()} == DIGESTS
    assert not cache.exists()  # never the cache emptyDir


def test_a_restart_downloads_nothing_and_a_changed_file_is_caught(tmp_path):
    seen: list = []
    claim = tmp_path / "claim"
    with mirror(seen) as url:
        env = {"PACKAGER_MODEL_DIR": str(claim), "PACKAGER_WEIGHTS_URL": url}
        launcher.ensure_weights(config(tmp_path / "cache"), env, log=lambda m: None)
        first = len(seen)
        logs: list[str] = []
        assert launcher.ensure_weights(config(tmp_path / "cache"), env, log=logs.append) == str(claim)
        assert len(seen) == first and any("nothing to download" in m for m in logs)
        # A torn file no longer matches the marker: the start refuses it (never serves it) ...
        (claim / "model.safetensors").write_bytes(b"torn")
        with pytest.raises(launcher.LaunchError, match="model.safetensors: sha256"):
            launcher.ensure_weights(config(tmp_path / "cache"), env, log=lambda m: None)
        # ... and once it is removed, the next start fetches that file alone.
        (claim / "model.safetensors").unlink()
        launcher.ensure_weights(config(tmp_path / "cache"), env, log=lambda m: None)
        assert seen[first:] == ["model.safetensors"]
    assert (claim / "model.safetensors").read_bytes() == FILES["model.safetensors"]


def test_a_read_only_claim_without_the_weights_says_how_to_fix(tmp_path):
    claim = tmp_path / "claim"
    claim.mkdir()
    claim.chmod(0o555)
    try:
        with mirror([]) as url:
            env = {"PACKAGER_MODEL_DIR": str(claim), "PACKAGER_WEIGHTS_URL": url}
            try:
                launcher.ensure_weights(config(tmp_path / "cache"), env, log=lambda m: None)
            except launcher.LaunchError as exc:
                assert "readOnly=false" in str(exc)
            else:  # root ignores the mode bits: then the download simply lands there
                assert (claim / "config.json").is_file()
    finally:
        claim.chmod(0o755)


COMMIT = "d" * 40


@contextmanager
def hub(seen: list):
    """A Hub on loopback, as huggingface_hub's snapshot_download talks to it: the revision's file
    list, then each file at the resolved commit."""
    class H(http.server.BaseHTTPRequestHandler):
        def _file(self, body: bool):
            rel = self.path.split(f"/resolve/{COMMIT}/", 1)[-1]
            data = FILES.get(rel)
            seen.append((self.command, self.path))
            if data is None:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("X-Repo-Commit", COMMIT)
            self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if body:
                self.wfile.write(data)

        def do_HEAD(self):  # noqa: N802
            self._file(False)

        def do_GET(self):  # noqa: N802
            if self.path.startswith("/api/models/"):
                seen.append((self.command, self.path))
                if "/tree/" in self.path:  # the file list (huggingface_hub >= 1.0)
                    doc = [{"type": "file", "path": rel, "size": len(data), "oid": hashlib.sha1(data).hexdigest()}
                           for rel, data in FILES.items()]
                else:  # the revision's metadata (older clients)
                    doc = {"id": "org/model", "sha": COMMIT, "siblings": [{"rfilename": rel} for rel in FILES]}
                body = json.dumps(doc).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            self._file(True)

        def log_message(self, *args):
            pass

    with serving(H) as url:
        yield url


def test_a_hub_repo_without_recorded_checksums_lands_in_the_claim_for_vllm(tmp_path):
    """vLLM volume images may record no file list (planned without downloading): the launcher
    fetches the pinned snapshot into the claim itself, so vLLM gets a local path and the chart's
    HF_HUB_OFFLINE=1 holds; the marker then makes a restart free."""
    seen: list = []
    claim = tmp_path / "claim"
    cfg = {"runtimes": ["vllm"], "cache_dir": str(tmp_path / "cache"),
           "weights": {"mode": "volume", "dir": "/opt/packager/model", "files": {},
                       "source": {"kind": "huggingface", "repo": "org/model", "revision": COMMIT}}}
    with hub(seen) as endpoint:
        env = {"PACKAGER_MODEL_DIR": str(claim), "HF_ENDPOINT": endpoint, "HF_HUB_OFFLINE": "1"}
        assert launcher.ensure_weights(cfg, env, log=lambda m: None) == str(claim)
        assert sorted(p.name for p in claim.iterdir() if not p.name.startswith(".")) == sorted(FILES)
        assert any(p.startswith("/api/models/org/model/") and COMMIT in p for _, p in seen)  # the pinned revision
        first = len(seen)
        logs: list[str] = []
        launcher.ensure_weights(cfg, env, log=logs.append)
        assert len(seen) == first and any("nothing to download" in m for m in logs)
    marker = json.loads((claim / WEIGHTS_MARKER).read_text())
    assert marker["source"] == {"kind": "huggingface", "repo": "org/model", "revision": COMMIT}
    assert sorted(marker["files"]) == sorted(FILES)
