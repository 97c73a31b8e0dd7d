"""The real CPU image: built offline, serving the default model, non-root,
no secret in it, and a code-only rebuild that reuses the deps and weights layers."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from answers import CAPITAL_Q  # a fact on any CPU (tests/answers.py)
from packager.image import docker
from packager.image.projectwheel import build_project_wheel, project_root

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def test_build_output_names_image_layers_and_run_line(built_image):
    out = built_image["stdout"]
    assert built_image["inspect"]["Id"] in out
    for step in ("deps", "weights", "code"):
        assert f"  {step} " in out, out
    assert "docker run --rm --network host" in out and built_image["tag"] in out


@pytest.mark.model_output
def test_paris_through_the_openai_client(container):
    from openai import OpenAI

    client = OpenAI(base_url=f"http://127.0.0.1:{container['port']}/v1", api_key="unused", timeout=120)
    models = [m.id for m in client.models.list().data]
    assert models, "no model served"
    reply = client.chat.completions.create(model=models[0], max_tokens=24, temperature=0,
                                           messages=[{"role": "user", "content": CAPITAL_Q}])
    assert "Paris" in reply.choices[0].message.content


def test_start_prints_one_ready_screen(container):
    # The launcher hands the engine what it planned; the engine prints it once, when ready.
    logs = subprocess.run([container["cli"], "logs", container["name"]], capture_output=True, text=True)
    out = logs.stdout + logs.stderr
    screen = out[out.index("ready in "):]
    for row in ("model     HuggingFaceTB/SmolLM2-135M-Instruct", "profile   cpu-", "why       cpu-", "hardware  ",
                f"endpoint  http://127.0.0.1:{container['port']}/v1"):
        assert row in screen, screen[:2000]
    assert float(screen.split()[2]) > 0


def test_runs_as_uid_1000_not_root(built_image, container):
    user = built_image["inspect"]["Config"]["User"]
    assert user and user.split(":")[0] not in ("", "0", "root")
    uid = subprocess.run([container["cli"], "exec", container["name"], "id", "-u"], capture_output=True, text=True)
    assert uid.stdout.strip() == "1000", uid.stderr
    # the cache dir is writable for that user (read-only caches break start-up)
    touch = subprocess.run([container["cli"], "exec", container["name"], "touch", "/var/cache/packager/.w"],
                           capture_output=True, text=True)
    assert touch.returncode == 0, touch.stderr


def test_build_secret_leaves_no_trace(built_image):
    cli, tag, token = built_image["cli"], built_image["tag"], built_image["token"]
    hist = subprocess.run([cli, "history", "--no-trunc", tag], capture_output=True, text=True, check=True).stdout
    assert "layer=secret-check" in hist  # the secret really was mounted into a build step
    # Neither the build secret nor an API key in the builder's environment reaches the
    # history, the labels/config, plan.json or anything else in the build output.
    for secret in (token, built_image["api_key"]):
        assert secret not in hist
        assert secret not in json.dumps(built_image["inspect"])
        for f in built_image["out"].rglob("*"):  # the context the engine read, plan.json, the chart
            if f.is_file() and f.stat().st_size < 1_000_000:
                assert secret.encode() not in f.read_bytes(), f
    # Nor in any layer of the image itself (docker save: the layer tars, uncompressed).
    secrets_ = [token.encode(), built_image["api_key"].encode()]
    save = subprocess.Popen([cli, "save", tag], stdout=subprocess.PIPE)
    tail, seen, found = b"", 0, set()
    while chunk := save.stdout.read(1 << 22):
        buf = tail + chunk
        found.update(x for x in secrets_ if x in buf)
        tail, seen = buf[-128:], seen + len(chunk)
    assert save.wait() == 0 and seen > 10_000_000
    assert not found


def test_labels_and_healthcheck(built_image):
    cfg = built_image["inspect"]["Config"]
    labels = cfg["Labels"]
    plan = json.loads((built_image["context"] / "plan.json").read_text())
    assert labels["dev.packager.profiles"].split(",") == [c["name"] for c in plan["candidates"]]
    assert labels["org.opencontainers.image.version"] and labels["org.opencontainers.image.licenses"]
    assert "/v1/health/ready" in " ".join(cfg["Healthcheck"]["Test"])
    assert cfg["Entrypoint"][-2:] == ["-m", "runtimes.launcher"]


def test_code_only_rebuild_reuses_deps_and_weights(built_image, tmp_path):
    """A one-line code change: only the code layer and what follows are rebuilt."""
    src = tmp_path / "src"
    src.mkdir()
    root = project_root()
    for name in ("pyproject.toml", "packager", "runtimes"):
        p = root / name
        (shutil.copytree(p, src / name, ignore=shutil.ignore_patterns("__pycache__")) if p.is_dir()
         else shutil.copy2(p, src / name))
    with open(src / "runtimes" / "launcher.py", "a") as f:
        f.write(f"\n# a one-line code change {time.time_ns()}\n")  # unique: the wheel is reproducible
    ctx = tmp_path / "context"
    shutil.copytree(built_image["context"], ctx, copy_function=_link)
    shutil.rmtree(ctx / "dist")
    build_project_wheel(ctx / "dist", src, log=lambda m: None)
    tag2 = built_image["tag"] + "-code"
    secret = ("id=hf_token,env=PACKAGER_TEST_HF_TOKEN",)
    os.environ["PACKAGER_TEST_HF_TOKEN"] = built_image["token"]
    try:
        again = docker.build(ctx, tag2, secrets=secret, log=lambda line: None)
    finally:
        os.environ.pop("PACKAGER_TEST_HF_TOKEN", None)
    try:
        steps = dict(again.steps)
        assert steps.get("deps") is True and steps.get("weights") is True, again.steps
        assert steps.get("code") is False, again.steps
        first = built_image["inspect"]["RootFS"]["Layers"]
        second = docker.inspect(tag2)["RootFS"]["Layers"]
        assert first[:4] == second[:4]  # base, system, deps, weights: the same layer digests
        assert first != second and again.image_id != built_image["inspect"]["Id"]
    finally:
        subprocess.run([built_image["cli"], "image", "rm", "-f", tag2], capture_output=True)


def _link(src, dst):
    try:
        Path(dst).hardlink_to(src)
    except OSError:
        shutil.copy2(src, dst)


def test_volume_image_has_no_weights_and_serves_a_mounted_dir(built_image, helpers, tmp_path):
    """--weights volume: same deps layer, no weights layer; the launcher verifies the mount."""
    import time

    free_port, packager_cli = helpers.free_port, helpers.packager_cli

    cli, tag = built_image["cli"], built_image["tag"] + "-vol"
    proc = packager_cli("build", "--hardware", "cpu", "--out", str(tmp_path), "--tag", tag,
                        "--base-image", built_image["inspect"]["Config"]["Labels"]["org.opencontainers.image.base.name"],
                        "--weights", "volume")
    assert proc.returncode == 0, proc.stderr[-3000:]
    try:
        info = docker.inspect(tag, cli)
        cached = next(l for l in proc.stdout.splitlines() if "steps cached" in l)
        assert "deps" in cached, cached  # the same deps layer, served from the engine's cache
        assert "weights" not in [layer.step for layer in docker.history(tag, cli)]
        baked_size = built_image["inspect"]["Size"]
        assert baked_size - info["Size"] > 90 * 2**20  # the 94 MiB GGUF is not in it
        mount = next(l for l in proc.stdout.splitlines() if "docker run" in l).split("-v ", 1)[1].split()[0]
        # Without the mount: a clear refusal, not a crash.
        bare = subprocess.run([cli, "run", "--rm", "--network", "host", "-e", "PACKAGER_HOST=127.0.0.1",
                               "-e", f"PACKAGER_PORT={free_port()}", tag], capture_output=True, text=True, timeout=300)
        assert bare.returncode != 0 and "PACKAGER_WEIGHTS_URL" in bare.stderr, bare.stderr
        port, name = free_port(), f"packager-test-vol-{os.getpid()}"
        subprocess.run([cli, "run", "-d", "--name", name, "--network", "host", "-e", "PACKAGER_HOST=127.0.0.1",
                        "-e", f"PACKAGER_PORT={port}", "-v", mount, tag], check=True, capture_output=True)
        try:
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline:
                if docker.probe_ready(port):
                    break
                time.sleep(1)
            else:
                pytest.fail("volume container not ready: " + subprocess.run(
                    [cli, "logs", name], capture_output=True, text=True).stderr[-3000:])
            logs = subprocess.run([cli, "logs", name], capture_output=True, text=True).stdout
            assert "weights: mounted at /opt/packager/model" in logs
        finally:
            subprocess.run([cli, "rm", "-f", name], capture_output=True)
    finally:
        subprocess.run([cli, "image", "rm", "-f", tag], capture_output=True)


def test_push_publishes_image_and_chart_to_a_real_registry(built_image, tmp_path):
    """`build --push REGISTRY`: the image and the chart beside the context reach the loopback registry."""
    import yaml

    from packager.image.outputs import push as _push
    from chart_pull import pull_chart

    repo = Path(__file__).resolve().parents[2]
    subprocess.run(["bash", str(repo / ".ci" / "registry.sh")], check=True, timeout=900)
    chart = built_image["out"] / "smollm2-135m-instruct" / "chart"
    assert (chart / "Chart.yaml").exists() or any(chart.glob("*/Chart.yaml"))
    logged: list[str] = []
    pushed = _push(built_image["tag"], "127.0.0.1:5000", chart, logged.append)
    image_ref, chart_ref = pushed.split(" (chart ")
    local_name = "127.0.0.1:5000/" + built_image["tag"]  # push tagged the image locally under this name
    subprocess.run([built_image["cli"], "image", "rm", local_name], capture_output=True)
    assert image_ref.startswith("127.0.0.1:5000/") and "@sha256:" in image_ref
    import tarfile

    archive = pull_chart(chart_ref.rstrip(")"), tmp_path / "pulled")
    with tarfile.open(archive) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith("/values.yaml"))
        values = yaml.safe_load(tar.extractfile(member).read())
    assert image_ref.split("@")[1] in yaml.safe_dump(values)  # the published chart pins the pushed digest


def test_the_image_enforces_an_api_key_from_its_environment(built_image, helpers):
    """The chart hands the key from its Secret to the pod as PACKAGER_API_KEY and
    VLLM_API_KEY; the image, started with those, guards /v1/* and keeps the probes open."""
    import secrets

    import httpx

    cli, port, key = built_image["cli"], helpers.free_port(), "sk-" + secrets.token_hex(12)
    name = f"packager-test-key-{os.getpid()}"
    subprocess.run([cli, "run", "-d", "--name", name, "--network", "host", "-e", "PACKAGER_HOST=127.0.0.1",
                    "-e", f"PACKAGER_PORT={port}", "-e", f"PACKAGER_API_KEY={key}", "-e", f"VLLM_API_KEY={key}",
                    built_image["tag"]], check=True, capture_output=True)
    try:
        deadline = time.monotonic() + 600
        while not docker.probe_ready(port):
            if time.monotonic() > deadline:
                pytest.fail("not ready: " + subprocess.run([cli, "logs", name], capture_output=True, text=True).stderr[-3000:])
            time.sleep(1)
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(base + "/v1/health/live", timeout=10).status_code == 200
        denied = httpx.get(base + "/v1/models", timeout=10)
        assert denied.status_code == 401 and denied.json()["error"]["message"]
        assert httpx.get(base + "/v1/models", headers={"Authorization": "Bearer wrong"}, timeout=10).status_code == 401
        assert httpx.get(base + "/v1/models", headers={"Authorization": f"Bearer {key}"}, timeout=10).status_code == 200
        logs = subprocess.run([cli, "logs", name], capture_output=True, text=True)
        assert key not in logs.stdout + logs.stderr
    finally:
        subprocess.run([cli, "rm", "-f", name], capture_output=True)
