"""Publish a chart (and its image) to an OCI registry: `packager publish`.

Charts go through Helm's OCI client; images through the Docker engine (docker SDK).
"""
from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml

from packager.chart.package import find_chart, package_chart
from packager.chart.values import parse_image
from packager.chart.valuesfile import render_values
from packager.errors import UserError
from runtimes.oci_ref import is_loopback, parse, without_registry


@dataclass(frozen=True)
class Registry:
    host: str  # host[:port]
    path: str  # repository prefix, may be empty
    insecure: bool = False  # --insecure-registry: plain HTTP off loopback, on the user's word

    @property
    def plain_http(self) -> bool:
        # Plain HTTP only on loopback (Docker and Helm allow it there) or when asked for.
        return self.insecure or is_loopback(self.host)

    @property
    def oci(self) -> str:
        return "oci://" + "/".join(p for p in (self.host, self.path) if p)


def parse_registry(ref: str, insecure: bool = False) -> Registry:
    """`oci://host[:port][/prefix]` or `host[:port][/prefix]`."""
    bare = ref.removeprefix("oci://").strip().strip("/")
    host, _, path = bare.partition("/")
    if not host or " " in bare:
        raise UserError(f"{ref!r} is not a registry", field="registry",
                        hint="e.g. oci://127.0.0.1:5000/charts or registry.example.com/team")
    return Registry(host=host, path=path, insecure=insecure)


@dataclass(frozen=True)
class Published:
    chart_ref: str  # oci://host/path/name:version
    chart_digest: str  # manifest digest in the registry
    image_ref: str | None  # host/repo@sha256:... when an image was pushed


def _docker_client() -> Any:
    try:
        import docker  # optional: only `publish` and `build --push` need it
    except ImportError:
        raise UserError("the docker SDK for Python is not installed",
                        hint="pip install 'packager[deploy]' (or: pip install docker)") from None
    try:
        client = docker.from_env()
        client.ping()
    except Exception as exc:  # the SDK raises several kinds for "no engine"
        raise UserError(f"the Docker engine is not reachable: {exc}",
                        hint="start dockerd (CI: .ci/docker.sh) or set DOCKER_HOST") from None
    return client


def push_image(tag: str, registry: str) -> str:
    """Push local image `tag` to `registry`; returns `host/repo@sha256:...`.

    The image keeps its repository path under the registry:
    `packager/m:1` -> `127.0.0.1:5000/packager/m:1`.
    """
    reg = parse_registry(registry)
    client = _docker_client()
    import docker.errors

    try:
        image = client.images.get(tag)
    except docker.errors.ImageNotFound:
        raise UserError(f"no local image {tag!r}", field="image",
                        hint="build it first: packager build MODEL --hardware HW") from None
    parsed = parse_image(tag)  # the chart's own image-reference parser: host ports and digests included
    # Drop a registry host the local name already carries (it has a dot or a port).
    repo, version = without_registry(parsed["repository"]), parsed["tag"] or "latest"
    target = "/".join(p for p in (reg.host, reg.path, repo) if p)
    image.tag(target, tag=version)
    digest = None
    for line in client.api.push(target, tag=version, stream=True, decode=True):
        if "error" in line:
            raise UserError(f"pushing {target}:{version} failed: {line['error']}", field="registry",
                            hint="is the registry running? (CI: .ci/registry.sh)")
        digest = (line.get("aux") or {}).get("Digest") or digest
    if not digest:
        raise UserError(f"the registry returned no digest for {target}:{version}", field="registry")
    return f"{target}@{digest}"


def push_chart(archive: str | Path, registry: str, insecure: bool = False) -> Published:
    """Push a packaged chart; returns where it landed and its manifest digest."""
    reg = parse_registry(registry, insecure)
    with helm.Chart.load(str(archive)) as chart:
        name, version = chart.name, chart.version
    try:
        helm.push(str(archive), reg.oci, plain_http=reg.plain_http)
        with helm.RegistryClient(plain_http=reg.plain_http) as client:
            digest = client.resolve(f"{reg.oci}/{name}:{version}")["digest"]
    except helm.HelmError as exc:
        raise UserError(f"pushing the chart to {reg.oci} failed: {exc}", field="registry",
                        hint="is the registry running and writable? (CI: .ci/registry.sh)") from None
    return Published(chart_ref=f"{reg.oci}/{name}:{version}", chart_digest=digest, image_ref=None)


def _recorded_image(chart_dir: Path) -> str | None:
    values = yaml.safe_load((chart_dir / "values.yaml").read_text(encoding="utf-8")) or {}
    image = values.get("image") or {}
    if not image.get("repository"):
        return None
    return f"{image['repository']}:{image.get('tag') or 'latest'}"


def _pin_image(chart_dir: Path, pushed: str) -> None:
    """Point the chart at the pushed image, by digest, so every pod runs exactly that build."""
    path = chart_dir / "values.yaml"
    text = path.read_text(encoding="utf-8")
    values = yaml.safe_load(text)
    ref = parse(pushed)
    values["image"]["repository"] = ref.name
    values["image"]["digest"] = ref.digest
    path.write_text(render_values(values, text), encoding="utf-8")  # its order and comments kept


def publish(chart_or_build_dir: str | Path, registry: str, *, image: str | None = None,
            image_registry: str | None = None, skip_image: bool = False, insecure: bool = False) -> Published:
    """Push the image (given, or the one the chart's values name) and then the chart.

    The published chart pins the pushed image by digest; the chart on disk is left as it is.
    """
    chart = find_chart(chart_or_build_dir)
    with tempfile.TemporaryDirectory(prefix="packager-publish-") as tmp:
        work = Path(tmp)
        if chart.is_file():
            helm.expand(str(work / "src"), str(chart))
            chart = find_chart(work / "src")
        else:
            chart = Path(shutil.copytree(chart, work / "src" / chart.name))
        image_ref = None
        tag = None if skip_image else (image or _recorded_image(chart))
        if tag:
            try:
                image_ref = push_image(tag, image_registry or parse_registry(registry).host)
            except UserError as exc:
                if image is None:  # the image came from the chart's values, not from the user
                    exc.hint = (exc.hint + "; " if exc.hint else "") + "or --skip-image to publish the chart alone"
                raise
            _pin_image(chart, image_ref)
        archive = package_chart(chart, work / "dist")
        result = push_chart(archive, registry, insecure)
    return Published(chart_ref=result.chart_ref, chart_digest=result.chart_digest, image_ref=image_ref)
