"""The Docker build driver: BuildKit through the docker CLI, offline.

BuildKit (not the SDK's classic builder) because the templates use bind, cache
and secret mounts. Debian's CLI (20.10) has BuildKit built in; newer clients
need a buildx plugin that these machines lack, so /usr/bin/docker comes first.
"""
from __future__ import annotations

import json
import re
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from packager.errors import UserError
from runtimes.layout import MODEL_DIR

ENGINE_FIX = ("start a Docker engine (as root: bash .ci/docker.sh), or pass --no-image "
              "to only render the context")


def docker_cli() -> str | None:
    for cand in (os.environ.get("PACKAGER_DOCKER"), "/usr/bin/docker", shutil.which("docker")):
        if cand and os.access(cand, os.X_OK):
            return cand
    return None


def engine_reachable(cli: str | None = None) -> tuple[bool, str]:
    """(reachable, why not)."""
    cli = cli or docker_cli()
    if not cli:
        return False, "no docker CLI found"
    try:
        proc = subprocess.run([cli, "version", "--format", "{{.Server.Version}}"],
                              capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        return False, "the engine did not answer within 20 s"
    if proc.returncode != 0 or not proc.stdout.strip():
        return False, (proc.stderr.strip().splitlines() or ["no engine"])[-1]
    return True, ""


@dataclass(frozen=True)
class Layer:
    step: str  # system | deps | weights | weights-check | code | config | base | ...
    size_bytes: int
    created_by: str


@dataclass(frozen=True)
class BuiltImage:
    tag: str
    image_id: str
    size_bytes: int
    layers: tuple[Layer, ...]
    seconds: float
    steps: tuple[tuple[str, bool], ...]  # (step name, cached) in build order

    @property
    def cached_steps(self) -> int:
        return sum(1 for _, cached in self.steps if cached)


def build(context: Path, tag: str, *, secrets: tuple[str, ...] = (), no_cache: bool = False,
          log=None) -> BuiltImage:
    """`docker build --network none` of `context`, streaming BuildKit's plain progress."""
    cli = docker_cli()
    ok, why = engine_reachable(cli)
    if not ok:
        raise UserError(f"context rendered at {context}, but no Docker engine is reachable ({why})", hint=ENGINE_FIX)
    log = log or (lambda line: print(line, file=sys.stderr))
    argv = [cli, "build", "--network", "none", "--progress", "plain", "--tag", tag]
    for s in secrets:  # docker's own syntax: id=NAME,env=VAR or id=NAME,src=FILE
        argv += ["--secret", s]
    if no_cache:
        argv.append("--no-cache")
    argv.append(str(context))
    env = dict(os.environ, DOCKER_BUILDKIT="1")
    t0 = time.monotonic()
    names: dict[str, str] = {}  # BuildKit vertex "#7" -> step name
    cached: set[str] = set()
    tail: list[str] = []
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip("\n")
            tail = (tail + [line])[-40:]
            vertex, _, rest = line.partition(" ")
            # "#7 [3/9] RUN ..." names a Dockerfile step ("[ 3/10]" from ten steps on); "#7 CACHED" says
            # the cache served it.
            step = STEP_LINE.match(rest)
            if step:
                names.setdefault(vertex, step_of(step[1]))
            elif rest == "CACHED":
                cached.add(vertex)
            log(line)
    if proc.returncode != 0:
        raise UserError("docker build failed:\n" + "\n".join(tail[-25:]),
                        hint="read the build log above; the context is kept for `docker build` by hand")
    seconds = time.monotonic() - t0
    info = inspect(tag, cli)
    return BuiltImage(tag=tag, image_id=info["Id"], size_bytes=int(info["Size"]),
                      layers=history(tag, cli), seconds=seconds,
                      steps=tuple((name, v in cached) for v, name in names.items()))


def inspect(ref: str, cli: str | None = None) -> dict:
    proc = subprocess.run([cli or docker_cli(), "image", "inspect", ref], capture_output=True, text=True)
    if proc.returncode != 0:
        raise UserError(f"docker image inspect {ref}: {proc.stderr.strip()}")
    return json.loads(proc.stdout)[0]


def history(ref: str, cli: str | None = None) -> tuple[Layer, ...]:
    """Layers oldest first, each named by the step that made it."""
    proc = subprocess.run([cli or docker_cli(), "history", "--no-trunc", "--human=false",
                           "--format", "{{json .}}", ref], capture_output=True, text=True)
    if proc.returncode != 0:
        raise UserError(f"docker history {ref}: {proc.stderr.strip()}")
    rows = [json.loads(l) for l in proc.stdout.splitlines() if l.strip()]
    layers = []
    for row in reversed(rows):
        created_by = row.get("CreatedBy", "")
        layers.append(Layer(step=step_of(created_by), size_bytes=int(row.get("Size") or 0), created_by=created_by))
    return tuple(layers)


STEP_LINE = re.compile(r"^\[\s*\d+/\d+\] (.*)$")


def step_of(created_by: str) -> str:
    # RUN steps carry `: layer=NAME` (a shell no-op) so history names them.
    if "layer=" in created_by:
        return created_by.split("layer=", 1)[1].split()[0]
    if "COPY" in created_by and MODEL_DIR in created_by:
        return "weights"
    if "COPY" in created_by and "plan.json" in created_by:
        return "plan"
    if created_by.startswith("FROM"):
        return "base"
    if "Imported from" in created_by or created_by == "":
        return "base"
    return "config"


def probe_ready(port: int, host: str = "127.0.0.1", timeout: float = 2.0) -> bool:
    """One readiness probe, as the image's HEALTHCHECK and Kubernetes ask it."""
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://{host}:{port}/v1/health/ready", timeout=timeout) as r:
            return r.status == 200
    except OSError:
        return False
