"""The modelcar puller (python -m packager.supply.pull) against a registry on loopback that misbehaves:
a blob longer than its manifest declares, a manifest without end, a slow drip, redirects to other
schemes. Each ends with its exit code and one line naming the cause, no traceback, and no .part file
left; a well-behaved registry (with an https-or-loopback redirect) still fills the directory."""
from __future__ import annotations

import hashlib
import http.server
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from loopback_http import serving
from tests.supply.conftest import REPO

FILES = {"model.safetensors": bytes(range(256)) * 1024, "config.json": b'{"model_type": "llama"}'}


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def manifest(files=FILES, sizes: dict | None = None) -> bytes:
    layers = [{"mediaType": "application/vnd.cncf.model.weight.v1.raw", "digest": digest(data),
               "size": (sizes or {}).get(rel, len(data)), "annotations": {"org.cncf.model.filepath": rel}}
              for rel, data in files.items()]
    return json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "artifactType": "application/vnd.cncf.model.manifest.v1+json",
                       "config": {"mediaType": "application/vnd.cncf.model.config.v1+json",
                                  "digest": digest(b"{}"), "size": 2}, "layers": layers}).encode()


def registry(raw_manifest: bytes, blob=None, manifest_body=None):
    """A handler serving one repository `m`: the manifest by digest, blobs by digest. `blob(handler, data)`
    replaces how a blob is sent; `manifest_body(handler)` how the manifest is."""
    blobs = {digest(data): data for data in FILES.values()}
    seen: list[str] = []

    class H(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def do_GET(self):  # noqa: N802
            seen.append(self.path)
            if self.path.startswith("/v2/m/manifests/"):
                if manifest_body:
                    return manifest_body(self)
                return self.send(raw_manifest)
            data = blobs.get(self.path.rsplit("/", 1)[-1])
            if data is None:
                self.send_response(404)
                self.end_headers()
            elif blob:
                blob(self, data)
            else:
                self.send(data)

        def send(self, data: bytes):
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    return H, seen


def pull(url: str, raw: bytes, dest: Path, *extra: str) -> subprocess.CompletedProcess:
    host = url.removeprefix("http://")
    proc = subprocess.run([sys.executable, "-m", "packager.supply.pull", f"{host}/m@{digest(raw)}", "--dest", str(dest),
                           *extra], capture_output=True, text=True, timeout=300, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def no_parts(dest: Path) -> bool:
    return not list(dest.rglob("*.part"))


def test_a_good_registry_fills_the_directory(tmp_path):
    raw = manifest()
    handler, _ = registry(raw)
    with serving(handler) as url:
        proc = pull(url, raw, tmp_path / "d")
    assert proc.returncode == 0, proc.stderr
    assert {rel: (tmp_path / "d" / rel).read_bytes() for rel in FILES} == FILES


def test_a_blob_longer_than_declared_stops_at_the_declared_size(tmp_path):
    raw = manifest()
    sent = []

    def endless(h, data):  # no Content-Length: the body runs until the client hangs up
        h.send_response(200)
        h.end_headers()
        try:
            for _ in range(4096):  # up to 1 GiB
                h.wfile.write(data)
                sent.append(len(data))
        except OSError:
            pass

    handler, _ = registry(raw, blob=endless)
    with serving(handler) as url:
        proc = pull(url, raw, tmp_path / "d")
    assert proc.returncode == 1, proc.stderr
    assert "sent more than the 262144 bytes the manifest declares" in proc.stderr, proc.stderr
    assert no_parts(tmp_path / "d") and not (tmp_path / "d" / "model.safetensors").exists()
    assert sum(sent) < 2**30  # the puller hung up; it did not read the gigabyte


def test_a_manifest_without_end_is_cut_at_the_cap(tmp_path):
    raw = manifest()

    def huge(h):
        h.send_response(200)
        h.end_headers()
        try:
            for _ in range(64):
                h.wfile.write(b" " * (1 << 20))
        except OSError:
            pass

    handler, _ = registry(raw, manifest_body=huge)
    with serving(handler) as url:
        proc = pull(url, raw, tmp_path / "d")
    assert proc.returncode == 1 and "more than the 4194304 bytes a manifest may have" in proc.stderr, proc.stderr


def test_a_slow_drip_ends_at_the_deadline(tmp_path):
    raw = manifest()

    def drip(h, data):  # the right bytes, one every 50 ms: 262,144 of them would take hours
        h.send_response(200)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        try:
            for i in range(len(data)):
                h.wfile.write(data[i:i + 1])
                h.wfile.flush()
                time.sleep(0.05)
        except OSError:
            pass

    handler, _ = registry(raw, blob=drip)
    with serving(handler) as url:
        proc = pull(url, raw, tmp_path / "d", "--deadline", "2")
    assert proc.returncode == 2 and "not read within the deadline" in proc.stderr, proc.stderr
    assert no_parts(tmp_path / "d")


def _redirect_to(target: str):
    def go(h, data):
        h.send_response(307)
        h.send_header("Location", target + h.path)
        h.send_header("Content-Length", "0")
        h.end_headers()
    return go


@pytest.mark.parametrize("target", ["ftp://127.0.0.1:9", "file:///etc"], ids=["ftp", "file"])
def test_a_redirect_to_another_scheme_is_refused(tmp_path, target):
    """urllib itself follows http -> ftp (and refuses file:); the puller follows neither."""
    raw = manifest()
    handler, _ = registry(raw, blob=_redirect_to(target))
    with serving(handler) as url:
        proc = pull(url, raw, tmp_path / "d")
    assert proc.returncode == 2, proc.stderr
    if target.startswith("ftp"):
        assert "redirected to ftp://127.0.0.1:9; only https (or loopback http" in proc.stderr, proc.stderr
    assert no_parts(tmp_path / "d") and not (tmp_path / "d" / "model.safetensors").exists()


def test_redirects_to_loopback_http_and_to_https_are_followed(tmp_path):
    raw = manifest()
    cdn, cdn_seen = registry(raw)
    with serving(cdn) as cdn_url:
        front, _ = registry(raw, blob=_redirect_to(cdn_url))
        with serving(front) as url:
            proc = pull(url, raw, tmp_path / "d")
        assert proc.returncode == 0, proc.stderr
        assert sorted(p.rsplit("/", 1)[-1] for p in cdn_seen) == sorted(digest(d) for d in FILES.values())
        # https is allowed: the loopback peer speaks plain HTTP, so the TLS handshake (not the policy) fails
        front, _ = registry(raw, blob=_redirect_to(cdn_url.replace("http://", "https://")))
        with serving(front) as url:
            proc = pull(url, raw, tmp_path / "e")
    assert proc.returncode == 2 and "SSL" in proc.stderr and "redirected" not in proc.stderr, proc.stderr


@pytest.mark.parametrize("edit,said", [
    (lambda m: m.update(layers={}), "layers is missing or not a list"),
    (lambda m: m["layers"][0].update(size="12"), "layers[0].size '12' is not a byte count"),
    (lambda m: m["layers"][0].update(digest="sha256:../../x"), "layers[0].digest 'sha256:../../x' is not"),
    (lambda m: m["layers"].append(dict(m["layers"][0])), "layers[2] repeats the filepath 'model.safetensors'"),
], ids=["layers", "size", "digest", "filepath twice"])
def test_a_malformed_pinned_manifest_is_one_line(tmp_path, edit, said):
    m = json.loads(manifest())
    edit(m)
    raw = json.dumps(m).encode()
    handler, seen = registry(raw)
    with serving(handler) as url:
        proc = pull(url, raw, tmp_path / "d")
    assert proc.returncode == 2 and said in proc.stderr, proc.stderr
    assert not any("/blobs/" in p for p in seen)  # nothing fetched on a manifest's word before it is checked
