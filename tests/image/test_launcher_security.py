"""The launcher keeps secrets where they belong (issue 9): the weights token
goes to the URL asked for only (never to a redirect target, never over plain
HTTP off loopback), an interrupted download resumes instead of starting over,
and the API key reaches the engine through its environment, never argv."""
from __future__ import annotations

import hashlib
import http.server
from pathlib import Path

import pytest

import launch_steps as launcher
from launch_steps import LaunchError
from loopback_http import serving

BODY = bytes(range(256)) * 64  # 16 KiB
GOOD = hashlib.sha256(BODY).hexdigest()
TOKEN = "hf_secret_token_123"


def _config(cache: Path, files=None) -> dict:
    return {"runtimes": ["cpu"], "cache_dir": str(cache),
            "weights": {"mode": "volume", "dir": "/opt/packager/model", "files": files or {"w.bin": GOOD},
                        "source": {"kind": "local"}}}


serve = serving


def _handler(seen: list, redirect_to: str | None = None, cut_at: int | None = None):
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            seen.append({"path": self.path, "auth": self.headers.get("Authorization"), "range": self.headers.get("Range")})
            if redirect_to:
                self.send_response(302)
                self.send_header("Location", redirect_to + self.path)
                self.end_headers()
                return
            start = int(self.headers["Range"].split("=")[1].rstrip("-")) if self.headers.get("Range") else 0
            self.send_response(206 if start else 200)
            self.send_header("Content-Length", str(len(BODY) - start))
            self.end_headers()
            end = cut_at if cut_at is not None else len(BODY)
            self.wfile.write(BODY[start:end])  # cut_at: the connection drops before the end

        def log_message(self, *args):
            pass

    return H


def test_the_token_never_follows_a_redirect(tmp_path):
    cdn_seen, hub_seen = [], []
    with serve(_handler(cdn_seen)) as cdn, serve(_handler(hub_seen, redirect_to=cdn)) as hub:
        env = {"PACKAGER_MODEL_DIR": str(tmp_path / "none"), "PACKAGER_WEIGHTS_URL": hub + "/repo",
               "PACKAGER_WEIGHTS_TOKEN": TOKEN}
        got = launcher.ensure_weights(_config(tmp_path / "cache"), env, log=lambda m: None)
    assert Path(got, "w.bin").read_bytes() == BODY
    assert hub_seen[0]["auth"] == f"Bearer {TOKEN}"
    assert cdn_seen and all(s["auth"] is None for s in cdn_seen)


def test_no_token_over_plain_http_off_loopback(tmp_path):
    env = {"PACKAGER_MODEL_DIR": str(tmp_path / "none"), "PACKAGER_WEIGHTS_URL": "http://weights.example.com/repo",
           "HF_TOKEN": TOKEN}
    logs: list[str] = []
    with pytest.raises(LaunchError, match="refusing to send the weights token over http") as e:
        launcher.ensure_weights(_config(tmp_path / "cache"), env, log=logs.append)
    assert TOKEN not in str(e.value) and not any(TOKEN in m for m in logs)


def test_an_interrupted_download_resumes_on_the_next_start(tmp_path):
    seen: list = []
    cfg = _config(tmp_path / "cache")
    with serve(_handler(seen, cut_at=5000)) as url:
        env = {"PACKAGER_MODEL_DIR": str(tmp_path / "none"), "PACKAGER_WEIGHTS_URL": url + "/repo"}
        with pytest.raises(LaunchError, match="the next start resumes it"):
            launcher.ensure_weights(cfg, env, log=lambda m: None)
    part = tmp_path / "none" / "w.bin.part"  # on the weights volume: it survives the restart
    assert part.stat().st_size == 5000
    with serve(_handler(seen)) as url:
        env["PACKAGER_WEIGHTS_URL"] = url + "/repo"
        got = launcher.ensure_weights(cfg, env, log=lambda m: None)
    assert Path(got, "w.bin").read_bytes() == BODY and not part.exists()
    assert seen[-1]["range"] == "bytes=5000-"


def test_the_api_key_reaches_the_engine_as_env_never_argv(tmp_path):
    vllm = ["vllm", "serve", "/opt/packager/model"]
    env = launcher.engine_environment(vllm, {"PACKAGER_API_KEY": "k-1", "PACKAGER_CACHE_DIR": str(tmp_path)})
    assert env["VLLM_API_KEY"] == "k-1"
    fallback = ["python3", "-m", "runtimes.fallback"]
    assert launcher.engine_environment(fallback, {"VLLM_API_KEY": "k-2"})["VLLM_API_KEY"] == "k-2"
    assert "VLLM_API_KEY" not in launcher.engine_environment(fallback, {})
    for argv in (vllm + ["--api-key", "k"], fallback + ["--api-key=k"]):
        with pytest.raises(LaunchError, match="ps"):
            launcher.engine_environment(argv, {})


def test_the_token_can_come_from_a_mounted_secret_file(tmp_path):
    seen: list = []
    (tmp_path / "token").write_text(TOKEN + "\n")
    with serve(_handler(seen)) as url:
        env = {"PACKAGER_MODEL_DIR": str(tmp_path / "none"), "PACKAGER_WEIGHTS_URL": url + "/repo",
               "HF_TOKEN_PATH": str(tmp_path / "token")}
        launcher.ensure_weights(_config(tmp_path / "cache"), env, log=lambda m: None)
    assert seen[0]["auth"] == f"Bearer {TOKEN}"
    with pytest.raises(LaunchError, match="HF_TOKEN_PATH"):
        launcher.ensure_weights(_config(tmp_path / "cache2"), dict(env, HF_TOKEN_PATH=str(tmp_path / "missing"),
                                                                   PACKAGER_MODEL_DIR=str(tmp_path / "none2")),
                                log=lambda m: None)


# -- from the Hub, through huggingface_hub, against a Hub on loopback ---------------------
COMMIT = "c" * 40


def _hub(seen: list, cdn: str | None = None, status: int = 200):
    class H(http.server.BaseHTTPRequestHandler):
        def _answer(self, body: bool):
            seen.append({"host": "hub", "method": self.command, "path": self.path, "auth": self.headers.get("Authorization")})
            if status != 200:
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(302 if cdn else 200)
            self.send_header("X-Repo-Commit", COMMIT)
            if cdn:  # as the Hub answers for LFS files: a signed URL elsewhere
                self.send_header("Location", cdn + "/blob?sig=1")
                self.send_header("X-Linked-Etag", f'"{GOOD}"')
                self.send_header("X-Linked-Size", str(len(BODY)))
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_header("ETag", f'"{GOOD}"')
            self.send_header("Content-Length", str(len(BODY)))
            self.end_headers()
            if body:
                self.wfile.write(BODY)

        def do_HEAD(self):  # noqa: N802
            self._answer(False)

        def do_GET(self):  # noqa: N802
            self._answer(True)

        def log_message(self, *args):
            pass

    return H


def _hub_config(cache: Path, sha: str = GOOD) -> dict:
    return {"runtimes": ["cpu"], "cache_dir": str(cache),
            "weights": {"mode": "volume", "dir": "/opt/packager/model", "files": {"w.bin": sha},
                        "source": {"kind": "huggingface", "repo": "org/model", "revision": COMMIT}}}


def test_hub_download_pins_the_revision_and_keeps_the_token_off_the_cdn(tmp_path):
    hub_seen, cdn_seen = [], []
    with serve(_handler(cdn_seen)) as cdn, serve(_hub(hub_seen, cdn=cdn)) as hub:
        env = {"PACKAGER_MODEL_DIR": str(tmp_path / "none"), "HF_ENDPOINT": hub, "HF_TOKEN": TOKEN}
        logs: list[str] = []
        got = launcher.ensure_weights(_hub_config(tmp_path / "cache"), env, log=logs.append)
    assert Path(got, "w.bin").read_bytes() == BODY
    assert hub_seen and all(s["path"] == f"/org/model/resolve/{COMMIT}/w.bin" for s in hub_seen)
    assert hub_seen[0]["auth"] == f"Bearer {TOKEN}"
    assert cdn_seen and all(s["auth"] is None for s in cdn_seen)
    assert not any(TOKEN in m for m in logs)


def test_hub_download_checks_the_sha256_and_fails_in_one_line(tmp_path):
    with serve(_hub([])) as hub:
        env = {"PACKAGER_MODEL_DIR": str(tmp_path / "none"), "HF_ENDPOINT": hub, "HF_TOKEN": TOKEN}
        with pytest.raises(LaunchError, match="sha256 does not match"):
            launcher.ensure_weights(_hub_config(tmp_path / "cache", sha="0" * 64), env, log=lambda m: None)
        assert not (tmp_path / "none" / "w.bin").exists()
    with serve(_hub([], status=401)) as hub:
        env["HF_ENDPOINT"] = hub
        with pytest.raises(LaunchError, match="failed: .*the next start tries again") as e:
            launcher.ensure_weights(_hub_config(tmp_path / "cache2"), env, log=lambda m: None)
        assert TOKEN not in str(e.value) and "\n" not in str(e.value)


def test_the_engine_stays_offline(tmp_path):
    """vLLM is handed the weights' local path (downloaded into the volume by the launcher), so
    the chart's HF_HUB_OFFLINE=1 stays as it is."""
    vllm = ["vllm", "serve", "/opt/packager/model"]
    env = {"HF_HUB_OFFLINE": "1", "PACKAGER_CACHE_DIR": str(tmp_path)}
    assert launcher.engine_environment(vllm, env)["HF_HUB_OFFLINE"] == "1"
