"""`packager deploy`: helm upgrade --install of the per-model chart, or its manifests (--dry-run)."""
from __future__ import annotations

import os
import re
import shlex
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterable

import helm_python as helm

from packager.chart import write_chart
from packager.errors import UserError

NO_CLUSTER_HINT = ("point KUBECONFIG (or ~/.kube/config) at a cluster, or use --dry-run "
                   "to print the manifests without one")


def default_release(plan: dict[str, Any]) -> str:
    """The model name as a DNS label (release names cannot hold dots)."""
    name = re.sub(r"[^a-z0-9-]+", "-", plan["model"]["name"].lower()).strip("-")
    return name[:53].rstrip("-") or "model"


def current_context() -> tuple[str | None, str]:
    """(the kubeconfig's current-context, where it was read) as kubectl and helm find it; (None, why) without one."""
    import yaml

    paths = [p for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p] or [str(Path.home() / ".kube" / "config")]
    for path in paths:  # kubectl: the first file that sets current-context wins
        try:
            doc = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError):
            continue
        if isinstance(doc, dict) and doc.get("current-context"):
            return str(doc["current-context"]), path
    return None, "no kubeconfig with a current-context (KUBECONFIG or ~/.kube/config)"


def dry_run_header(*, release: str, namespace: str, chart_command: list[str], chart_dir: str) -> str:
    """What `deploy --dry-run` prints first: the release, namespace and context, and the exact commands that
    install these manifests with Helm (the chart written by `packager chart`, its values already inside)."""
    context, where = current_context()
    helm_cmd = ["helm", "upgrade", "--install", release, chart_dir, "--namespace", namespace, "--create-namespace"]
    if context:
        helm_cmd += ["--kube-context", context]
    lines = [
        f"helm: {shlex.join(helm_cmd)}",
        f"release: {release}   namespace: {namespace}   context: "
        + (f"{context} (from {where})" if context else f"none: {where}"),
        f"chart: write it first, values included: {shlex.join(chart_command)}",
        "nothing was sent to a cluster; `packager deploy` without --dry-run runs the same install.",
        f"before the first install on a real cluster read {chart_dir}/README.md (From chart to running pod):",
        "  the image in a registry your nodes pull from (image.repository, imagePullSecrets), the device plugin,",
        "  node labels, and the CRDs the optional parts need.",
    ]
    return "".join(f"# {line}\n" for line in lines)


def render_manifests(chart_dir: Path, *, release: str, namespace: str, values: dict | None = None) -> str:
    """Every manifest the release would create (tests included), `helm template` style."""
    with helm.Chart.load(str(chart_dir)) as chart:
        try:
            rendered = chart.render(values, name=release, namespace=namespace, is_install=True)
        except helm.HelmError as exc:
            raise UserError(f"the chart does not render: {exc}", file=str(chart_dir)) from None
    docs = []
    for path in sorted(rendered):
        body = rendered[path].strip()
        if body and not path.endswith("NOTES.txt"):
            docs.append(f"---\n# Source: {path}\n{body}\n")
    return "".join(docs)


def connect(namespace: str) -> helm.Config:
    """A Helm config on the current kubeconfig, checked to reach its API server."""
    try:
        cfg = helm.Config(namespace=namespace)
        cfg.check_reachable()
    except helm.HelmError as exc:
        raise UserError(f"no reachable Kubernetes cluster: {exc}", field="kubeconfig",
                        hint=NO_CLUSTER_HINT) from None
    return cfg


def upgrade_install(cfg: helm.Config, chart_dir: Path, *, release: str, namespace: str,
                    values: dict | None = None) -> dict[str, Any]:
    """Upgrade the release when it exists, install it otherwise."""
    try:
        cfg.status(release)
        exists = True
    except helm.HelmNotFoundError:
        exists = False
    except helm.HelmError as exc:
        # Helm reports a missing release as "release: not found" under more than one code.
        if "not found" not in str(exc).lower():
            raise UserError(f"cannot read release {release!r}: {exc}", field="release") from None
        exists = False
    try:
        if exists:
            return cfg.upgrade(str(chart_dir), release, values, namespace=namespace)
        return cfg.install(str(chart_dir), release, values, namespace=namespace, create_namespace=True)
    except helm.HelmError as exc:
        raise UserError(f"helm {'upgrade' if exists else 'install'} of {release!r} failed: {exc}",
                        field="release") from None


def check_release_name(release: str) -> None:
    try:
        helm.validate_release_name(release)
    except helm.HelmError as exc:
        raise UserError(f"{release!r} is not a valid release name: {exc}", field="--release",
                        hint="lowercase letters, digits and '-', at most 53 characters") from None


def deploy(plan: dict[str, Any], *, namespace: str = "default", release: str | None = None,
           image: str | None = None, sets: Iterable[str] = (), values_files: Iterable[str | Path] = (),
           dry_run: bool = False, allow_unverified: bool = False) -> str:
    """Deploy a chart rendered here from `plan`; returns the manifests (dry run) or the release's notes."""
    release = release or default_release(plan)
    check_release_name(release)
    with tempfile.TemporaryDirectory(prefix="packager-deploy-") as tmp:
        chart_dir = write_chart(plan, Path(tmp), image=image, sets=sets, values_files=values_files)
        # OCI weights are checked before anything is rendered or installed (packager.supply.gate).
        from packager.supply.gate import check_unverified

        check_unverified(chart_dir, allow_unverified, log=lambda msg: print(msg, file=sys.stderr))
        return _install(chart_dir, None, release=release, namespace=namespace, dry_run=dry_run)


def deploy_verified(image: str | None, keys: Path, *, namespace: str = "default", release: str | None = None,
                    sets: Iterable[str] = (), values_files: Iterable[str | Path] = (), dry_run: bool = False) -> str:
    """Verify the imported release at `image`, then install exactly its signed chart: its own values (written
    from the signed plan), the operator's -f/--set, and last the image and weights pinned by the verified digests."""
    from packager.chart import overrides
    from packager.supply.gate import verified_release

    if release:
        check_release_name(release)
    with tempfile.TemporaryDirectory(prefix="packager-deploy-") as tmp:
        verified = verified_release(image, keys, Path(tmp), log=lambda msg: print(msg, file=sys.stderr))
        release = release or default_release(verified.plan)
        check_release_name(release)
        values = overrides.deep_merge(overrides.apply({}, sets=sets, values_files=values_files), verified.pins)
        text = _install(verified.chart, values, release=release, namespace=namespace, dry_run=dry_run)
    if not dry_run:
        return text
    # A verified release installs only through packager (verify first, then pin by digest): that is its command.
    again = ["packager", "deploy", "--keys", str(keys), "--image", str(image), "--namespace", namespace,
             "--release", release, *(x for v in sets for x in ("--set", v)),
             *(x for f in values_files for x in ("-f", str(f)))]
    context, where = current_context()
    return (f"# install: {shlex.join(again)}\n"
            f"# release: {release}   namespace: {namespace}   context: "
            + (f"{context} (from {where})" if context else f"none: {where}") + "\n"
            "# nothing was sent to a cluster; the command above verifies the release again, then installs exactly these.\n"
            + text)


def _install(chart: Path, values: dict | None, *, release: str, namespace: str, dry_run: bool) -> str:
    if dry_run:
        return render_manifests(chart, release=release, namespace=namespace, values=values)
    cfg = connect(namespace)
    with cfg:
        result = upgrade_install(cfg, chart, release=release, namespace=namespace, values=values)
    info = result.get("info") or {}
    notes = info.get("notes") if isinstance(info, dict) else None
    return notes or f"release {release} deployed in namespace {namespace}"
