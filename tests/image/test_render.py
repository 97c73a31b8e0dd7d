"""Templates and the build context, without a Docker engine."""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from jinja2.exceptions import SecurityError

from packager.image.context import ImageContext
from packager.families import FAMILIES, family_for
from packager.image.render import _environment, render_dockerfile, templates_dir
from packager.errors import UserError

ROOT = Path(__file__).resolve().parents[2]


def ctx(family: str = "cpu", **kw) -> ImageContext:
    fam = FAMILIES[family]
    base = dict(family=fam.name, template=fam.template, base_image="packager-base:bookworm", python="/usr/bin/python3",
                weights_mode="baked", weights=(("model it's.gguf", "ab" * 32),), project_wheel="packager-0.1.0-py3-none-any.whl",
                labels=(("dev.packager.profiles", "a,b"), ("org.opencontainers.image.title", 'x "quoted"')),
                env=(("PACKAGER_DEVICE", "cpu"),), groups=fam.groups, secrets=(), healthcheck_start_period_s=900,
                packager_version="0.1.0")
    base.update(kw)
    return ImageContext(**base)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_family_renders_layers_stable_to_volatile(family):
    text = render_dockerfile(ctx(family))
    order = [text.index(marker) for marker in
             ("FROM ", "layer=system", "layer=deps", "COPY model/", "layer=weights-check", "layer=code",
              "COPY plan.json")]
    assert order == sorted(order), text
    assert "USER 1000:1000" in text and "HEALTHCHECK" in text and "/v1/health/ready" in text
    assert 'ENTRYPOINT ["/opt/packager/venv/bin/python", "-m", "runtimes.launcher"]' in text
    assert "dev.packager.profiles=\"a,b\"" in text
    assert 'CMD ["/opt/packager/venv/bin/python", "-c"' in text  # the healthcheck needs no curl


def test_weights_checksum_is_in_the_dockerfile_and_names_are_shell_quoted():
    text = render_dockerfile(ctx())
    assert "ab" * 32 + " 'model it'\"'\"'s.gguf' | sha256sum --check --strict -" in text
    assert 'org.opencontainers.image.title="x \\"quoted\\""' in text


def test_volume_mode_bakes_no_weights():
    text = render_dockerfile(ctx(weights_mode="volume", weights=()))
    assert "COPY model/" not in text and "sha256sum" not in text


def test_secrets_are_mounted_never_copied_or_set():
    text = render_dockerfile(ctx(secrets=("hf_token",)))
    line = next(l for l in text.splitlines() if "hf_token" in l and l.startswith("RUN"))
    assert "--mount=type=secret,id=hf_token" in line
    assert "ARG" not in text and "hf_token" not in text.split("ENV", 1)[1].split("LABEL", 1)[0]


def test_family_specific_blocks():
    assert "video" in render_dockerfile(ctx("triton-rocm"))
    assert "TRITON_CACHE_DIR" in render_dockerfile(ctx("triton-cuda"))
    assert "--without-pip" in render_dockerfile(ctx("vllm"))


def test_family_for_profiles():
    assert family_for({"runtime": "cpu", "vendor": "cpu"}).name == "cpu"
    assert family_for({"runtime": "vllm", "vendor": "amd"}).name == "vllm"
    assert family_for({"runtime": "triton", "vendor": "amd"}).name == "triton-rocm"
    assert family_for({"runtime": "triton", "vendor": "nvidia"}).name == "triton-cuda"
    with pytest.raises(UserError):
        family_for({"runtime": "tgi"})


def test_strict_undefined_fails_loudly(tmp_path):
    (tmp_path / "bad.j2").write_text("FROM {{ ctx.no_such_field }}\n")
    with pytest.raises(UserError, match="no_such_field"):
        render_dockerfile(dataclasses.replace(ctx(), template="bad.j2"), root=tmp_path)


def test_sandbox_blocks_python_internals():
    env = _environment(templates_dir())
    with pytest.raises(SecurityError):
        env.from_string("{{ ctx.__class__.__init__.__globals__ }}").render(ctx=ctx())


def test_context_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        ctx().base_image = "evil"  # type: ignore[misc]


def _cli(*args: str, env: dict) -> subprocess.CompletedProcess:
    code = "import sys; from packager.cli import main; sys.argv[0] = 'packager'; main()"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=600)


@pytest.mark.slow
def test_no_engine_renders_everything_and_exits_0_or_2(tmp_path):
    """Real CLI, real wheelhouse (cached), an engine address where nothing listens."""
    env = dict(os.environ, DOCKER_HOST=f"unix://{tmp_path}/no-engine.sock")
    out = tmp_path / "out"
    proc = _cli("build", "--hardware", "cpu", "--out", str(out), "--no-image", env=env)
    assert proc.returncode == 0, proc.stderr
    ctxdir = out / "smollm2-135m-instruct" / "context"
    assert "no engine reachable" in proc.stderr
    plan = json.loads((out / "smollm2-135m-instruct" / "plan.json").read_text())
    assert plan["selected"]["engine_argv"][plan["selected"]["engine_argv"].index("--model") + 1] == \
        "/opt/packager/model/SmolLM2-135M-Instruct.Q4_1.gguf"
    assert (ctxdir / "Dockerfile").is_file() and (ctxdir / "model" / "SmolLM2-135M-Instruct.Q4_1.gguf").is_file()
    wheels = {p.name.split("-")[0].lower() for p in (ctxdir / "wheelhouse").glob("*.whl")}
    assert {"torch", "transformers", "gguf", "fastapi", "uvicorn", "numpy", "pydantic", "typer"} <= wheels
    assert any("+cpu" in p.name for p in (ctxdir / "wheelhouse").glob("torch-*.whl"))
    assert len(list((ctxdir / "dist").glob("packager-*.whl"))) == 1
    assert json.loads((ctxdir / "image.json").read_text())["weights"]["mode"] == "baked"

    proc = _cli("build", "--hardware", "cpu", "--out", str(out), env=env)
    assert proc.returncode == 2, proc.stderr
    assert "no Docker engine is reachable" in proc.stderr and ".ci/docker.sh" in proc.stderr


def test_the_image_plan_carries_no_build_host_path(tmp_path):
    import json

    from packager.image.pipeline import BuildRequest, run_build

    root = Path(__file__).resolve().parents[2]
    req = BuildRequest(model=str(root / "manifests" / "models" / "smollm2-135m-instruct.yaml"), hardware="cpu",
                       out=tmp_path, no_image=True)
    result = run_build(req, log=lambda m: None)
    host = json.loads(result.plan_path.read_text())
    image = json.loads((result.context / "plan.json").read_text())
    assert host["model"]["local_path"]  # the lockfile on the host keeps it
    assert image["model"]["local_path"] is None
    assert host["model"]["local_path"] not in (result.context / "plan.json").read_text()


def test_buildkit_step_lines_are_read_with_ten_or_more_steps():
    from packager.image.docker import STEP_LINE, step_of

    for line, name in (("[3/9] RUN : layer=deps && x", "deps"), ("[ 5/10] RUN : layer=tokenizer && y", "tokenizer"),
                       ("[10/10] COPY plan.json image.json /opt/packager/", "plan")):
        m = STEP_LINE.match(line)
        assert m and step_of(m[1]) == name, line
    assert not STEP_LINE.match("[internal] load build definition from Dockerfile")


@pytest.mark.parametrize("vendor,flags", [("nvidia", "--gpus all --shm-size 16g"),
                                          ("amd", "--device /dev/kfd --device /dev/dri --group-add video --shm-size 16g"),
                                          ("cpu", None)])
def test_the_printed_run_line_reaches_the_profiles_devices(vendor, flags):
    from packager.image.outputs import run_command

    hub = {"selected": {"vendor": vendor}, "model": {"source": {"kind": "huggingface", "repo": "org/m"}}}
    baked = run_command("img:1", "baked", None, 8000, hub)
    assert baked.startswith("docker run --rm --network host") and baked.endswith(" img:1")
    if flags:
        assert f" {flags} " in baked
    else:
        assert "--gpus" not in baked and "/dev/kfd" not in baked and "--shm-size" not in baked
    assert "HF_TOKEN" not in baked  # baked weights need no token at run time
    volume = run_command("img:1", "volume", None, 8000, hub)
    assert " -e HF_TOKEN " in volume and "-v /path/to/weights:/opt/packager/model:ro" in volume
    assert "HF_TOKEN=" not in volume  # passed by name: the host's value is never printed


def test_a_volume_build_writes_a_chart_that_downloads_into_the_claim(tmp_path):
    """build --weights volume: the image has no weights, so its chart must not say baked."""
    import yaml

    from packager.image.pipeline import BuildRequest, run_build

    root = Path(__file__).resolve().parents[2]
    model = str(root / "manifests" / "models" / "smollm2-135m-instruct.yaml")
    modes = {}
    for weights in ("baked", "volume"):
        req = BuildRequest(model=model, hardware="cpu", out=tmp_path / weights, no_image=True, weights=weights)
        result = run_build(req, log=lambda m: None)
        modes[weights] = yaml.safe_load((result.chart / "values.yaml").read_text())["weights"]["mode"]
        assert json.loads((result.context / "image.json").read_text())["weights"]["mode"] == weights
    assert modes == {"baked": "baked", "volume": "volume"}
