"""The chart's pods under a real container engine: podman kube play of the rendered objects,
unchanged, from the CPU image built here with Docker (two builds share every layer but the
weights: baked, and volume for the PVC path), loaded into podman with `docker save | podman load`.

Without podman or Docker these tests skip on a developer machine and FAIL under CI=true
(CI runs .ci/docker.sh and .ci/podman.sh first)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from packager.image import docker

ROOT = Path(__file__).resolve().parents[2]
BASE = os.environ.get("PACKAGER_BASE_IMAGE", "packager-base:bookworm")
MODEL = ROOT / "manifests" / "models" / "smollm2-135m-instruct.yaml"


def _missing(msg: str):
    if os.environ.get("CI") == "true":
        pytest.fail(msg + " (CI=true: pod tests must run, never skip)", pytrace=False)
    pytest.skip(msg)


def require_tools() -> str:
    if not shutil.which("podman") or subprocess.run(["podman", "info"], capture_output=True).returncode != 0:
        _missing("podman is not usable; run `bash .ci/podman.sh` as root")
    cli = docker.docker_cli()
    ok, why = docker.engine_reachable(cli)
    if ok and subprocess.run([cli, "image", "inspect", BASE], capture_output=True).returncode != 0:
        ok, why = False, f"base image {BASE} is missing"
    if not ok:
        _missing(f"Docker engine not usable ({why}); run `bash .ci/docker.sh` as root")
    return cli


def build(cli: str, out: Path, tag: str, *extra: str) -> Path:
    """`packager build` through the real CLI; returns the chart it wrote beside the image."""
    code = "import sys; from packager.cli import main; sys.argv[0] = 'packager'; main()"
    proc = subprocess.run([sys.executable, "-c", code, "build", str(MODEL), "--hardware", "cpu", "--base-image", BASE,
                           "--out", str(out), "--tag", tag, *extra], capture_output=True, text=True, cwd=ROOT,
                          timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    charts = list(out.glob("*/chart/*/Chart.yaml"))
    assert len(charts) == 1, charts
    return charts[0].parent


def load_into_podman(cli: str, *tags: str) -> None:
    """One `docker save` of every tag: the layers they share travel once."""
    save = subprocess.Popen([cli, "save", *tags], stdout=subprocess.PIPE)
    load = subprocess.run(["podman", "load", "-q"], stdin=save.stdout, capture_output=True, text=True)
    save.stdout.close()
    assert save.wait() == 0 and load.returncode == 0, load.stderr


@pytest.fixture(scope="session")
def pod_images(tmp_path_factory):
    """{"baked": chart dir, "volume": chart dir, ...}: both images built and loaded into podman."""
    cli = require_tools()
    t0 = time.monotonic()
    tag = f"packager-test/pods-smollm2:{os.getpid()}"
    out = tmp_path_factory.mktemp("pods-build")
    charts = {"baked": build(cli, out / "baked", f"{tag}-baked"),
              "volume": build(cli, out / "volume", f"{tag}-volume", "--weights", "volume")}
    built = time.monotonic() - t0
    load_into_podman(cli, *(f"{tag}-{mode}" for mode in charts))
    info = {**charts, "tag": tag, "build_s": built, "load_s": time.monotonic() - t0 - built}
    print(f"\npods: images built in {info['build_s']:.0f} s, loaded into podman in {info['load_s']:.0f} s")
    yield info
    for mode in charts:
        subprocess.run(["podman", "rmi", "-f", f"{tag}-{mode}"], capture_output=True)
        subprocess.run([cli, "image", "rm", "-f", f"{tag}-{mode}"], capture_output=True)
