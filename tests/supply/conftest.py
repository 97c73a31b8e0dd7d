"""Real tools for the supply-chain tests: keys made by `packager keys init`, the loopback registry,
a second, empty throwaway registry per test that needs one, and a tiny image made without Docker.

A missing tool skips on a developer machine and FAILS under CI=true (.ci/supply_chain.sh installs them).
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import tarfile
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
REGISTRY = "127.0.0.1:5000"
BASE = os.environ.get("PACKAGER_BASE_IMAGE", "packager-base:bookworm")
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def packager(*args: str, timeout: int = 1800) -> subprocess.CompletedProcess:
    code = "import sys; from packager.cli import main; sys.argv[0] = 'packager'; main()"
    return subprocess.run([os.environ.get("PYTHON", "python3"), "-c", code, *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)


def need(*tools: str) -> None:
    missing = [t for t in tools if not shutil.which(t)]
    try:
        import model_signing, oras  # noqa: F401
    except ImportError as exc:
        missing.append(str(exc.name))
    if missing:
        msg = f"missing supply-chain tools {missing}: run `bash .ci/supply_chain.sh`"
        if os.environ.get("CI") == "true":
            pytest.fail(msg + " (CI=true: these tests must run, never skip)", pytrace=False)
        pytest.skip(msg)


def answers(host: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{host}/v2/", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


@pytest.fixture(scope="session")
def keys(tmp_path_factory):
    need("gpg", "skopeo")
    from packager.supply.keys import init_keys

    directory = tmp_path_factory.mktemp("supply") / "keys"
    return init_keys(directory)


@pytest.fixture(scope="session")
def registry() -> str:
    need("skopeo")
    subprocess.run(["bash", str(REPO / ".ci" / "registry.sh")], check=True, timeout=900, capture_output=True)
    return REGISTRY


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def empty_registry(tmp_path):
    """A second docker-registry on its own loopback port, with its own empty storage (the air-gapped site)."""
    yield from start_registry(tmp_path)


@pytest.fixture(scope="module")
def site_registry(tmp_path_factory):
    """The same, shared by a module's tests."""
    yield from start_registry(tmp_path_factory.mktemp("site-registry"))


class Host(str):
    """HOST:PORT of a throwaway registry, knowing where it stores blobs (tests tamper with them there)."""
    storage: Path


def start_registry(tmp_path: Path):
    need("docker-registry")
    port = free_port()
    host = Host(f"127.0.0.1:{port}")
    host.storage = tmp_path / "storage"
    (tmp_path / "storage").mkdir()
    config = tmp_path / "registry.yml"
    config.write_text(f"version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {tmp_path / 'storage'}\n"
                      f"http:\n  addr: {host}\n")
    proc = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=subprocess.DEVNULL,
                            stderr=open(tmp_path / "registry.log", "wb"), start_new_session=True)
    try:
        for _ in range(100):
            if answers(host):
                break
            time.sleep(0.1)
        else:
            pytest.fail(f"the throwaway registry did not answer on {host}: {(tmp_path / 'registry.log').read_text()}")
        assert catalog(host) == []  # really empty
        yield host
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        shutil.rmtree(host.storage, ignore_errors=True)  # a restored bundle is hundreds of MiB


def blob_file(host: Host, digest: str) -> Path:
    """Where a throwaway registry keeps a blob (docker-registry's filesystem driver layout)."""
    hexd = digest.removeprefix("sha256:")
    return host.storage / "docker" / "registry" / "v2" / "blobs" / "sha256" / hexd[:2] / hexd / "data"


def catalog(host: str) -> list[str]:
    with urllib.request.urlopen(f"http://{host}/v2/_catalog", timeout=5) as r:
        return json.load(r)["repositories"]


def tiny_layout(dest: Path, text: str) -> Path:
    """A one-layer OCI image layout (a text file at /hello.txt), made without an engine."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        data = text.encode()
        info = tarfile.TarInfo("hello.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    raw = buf.getvalue()
    layer = gzip.compress(raw, mtime=0)
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Labels": {"test": "supply"}},
                         "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(raw).hexdigest()]}}).encode()
    blobs = dest / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def put(data: bytes, media_type: str) -> dict:
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(data)}

    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": put(config, "application/vnd.oci.image.config.v1+json"),
                           "layers": [put(layer, "application/vnd.oci.image.layer.v1.tar+gzip")]}).encode()
    desc = put(manifest, "application/vnd.oci.image.manifest.v1+json")
    desc["annotations"] = {"org.opencontainers.image.ref.name": "latest"}
    (dest / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (dest / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [desc]}))
    return dest


@pytest.fixture
def tiny_image(registry, tmp_path):
    """A tiny image pushed to the loopback registry under a fresh tag; returns host/repo:tag."""
    tag = f"{registry}/supply-test/tiny:{os.getpid()}-{time.monotonic_ns()}"
    layout = tiny_layout(tmp_path / "tiny", f"hello {tag}\n")
    subprocess.run(["skopeo", "copy", "--quiet", "--dest-tls-verify=false", f"oci:{layout}:latest", f"docker://{tag}"],
                   check=True, capture_output=True)
    return tag


@pytest.fixture
def private_material(keys):
    """Byte strings only the private keys hold: none may appear in anything packager writes."""
    return secret_chunks(keys)


def _decode(path: Path) -> bytes:
    data = path.read_bytes()
    if data.startswith(b"-----BEGIN PGP"):
        import base64

        body = [l for l in data.decode().splitlines()[1:] if l and not l.startswith(("-----", "=")) and ":" not in l]
        return base64.b64decode("".join(body))
    if data.startswith(b"-----BEGIN"):
        import base64

        return base64.b64decode("".join(l for l in data.decode().splitlines() if not l.startswith("-----")))
    return data


def secret_chunks(keys) -> list[bytes]:
    """32-byte windows of each private key (decoded) that its public half does not contain, plus
    the private files' own text lines."""
    from packager.supply.keys import PRIVATE, PUBLIC

    out = []
    for priv, pub in zip(PRIVATE, PUBLIC):
        secret, public = _decode(keys.path(priv)), _decode(keys.path(pub))
        windows = [secret[i:i + 32] for i in range(0, len(secret) - 32, 8) if secret[i:i + 32] not in public]
        out += windows[::max(1, len(windows) // 6)][:6]  # six spread over the secret-only bytes: scans stay cheap
        raw, pub_raw = keys.path(priv).read_bytes(), keys.path(pub).read_bytes()
        out += [line for line in raw.splitlines() if len(line) >= 40 and line not in pub_raw][:3]
    assert len(out) >= 15
    return out


def assert_no_secret(data: bytes, chunks: list[bytes], what: str) -> None:
    leaked = [c for c in chunks if c in data]
    assert not leaked, f"{len(leaked)} piece(s) of private key material found in {what}"


@pytest.fixture(scope="session")
def made(keys, registry, tmp_path_factory):
    """One bundle of the default model (code-only image, weights as a ModelPack artifact) per session."""
    from tests.image.conftest import require_engine

    require_engine()
    need("skopeo", "gpg", "cyclonedx-py")
    out = tmp_path_factory.mktemp("bundle")
    tag = f"packager-test/smollm2-supply:{os.getpid()}-oci"
    t0 = time.monotonic()
    proc = packager("bundle", "smollm2-135m-instruct", "--hardware", "cpu", "--keys", str(keys.directory),
                    "--out", str(out / "model.bundle.tar"), "--base-image", BASE, "--tag", tag, "--registry", registry)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    yield {"bundle": out / "model.bundle.tar", "out": out, "tag": tag, "proc": proc, "seconds": time.monotonic() - t0}
    subprocess.run(["docker", "image", "rm", "-f", tag, f"{registry}/{tag}"], capture_output=True)
    shutil.rmtree(out, ignore_errors=True)


def assert_no_secret_in_layers(bundle: Path, chunks: list[bytes]) -> int:
    """Scan every gzip blob of a bundle decompressed (image layers): a key inside a layer would not show
    in the compressed bytes. Returns the bytes scanned."""
    import zlib

    scanned = 0
    with tarfile.open(bundle) as tar:
        for member in tar:
            if not member.isfile() or not member.name.startswith("blobs/"):
                continue
            f = tar.extractfile(member)
            if f.read(2) != b"\x1f\x8b":
                continue
            f.seek(0)
            d = zlib.decompressobj(16 + zlib.MAX_WBITS)
            tail = b""
            while block := f.read(16 << 20):
                window = tail + d.decompress(block)
                assert_no_secret(window, chunks, f"image layer {member.name}")
                scanned += len(window) - len(tail)
                tail = window[-128:]
    return scanned
