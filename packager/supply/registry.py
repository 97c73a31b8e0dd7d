"""Pushing and reading OCI artifacts with oras-py (the Docker engine cannot push artifacts).

oras-py's `push()` cannot set `artifactType` and flattens paths, so the manifest is built
here and sent with `upload_blob` (which HEADs first: a blob already there is not sent again)
and a PUT of our exact manifest bytes (its digest is then the one we computed).
"""
from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

from packager.errors import UserError
from runtimes.digests import oci_digest
from runtimes.oci_ref import is_loopback

LARGE = 256 << 20  # larger blobs go up in chunks instead of one in-memory PUT


@dataclass(frozen=True)
class Pushed:
    ref: str  # host/repo@sha256:...
    tag_ref: str  # host/repo:tag
    uploaded_bytes: int  # bytes of blobs the registry did not have yet
    reused_bytes: int


def client(host: str, insecure: bool = False):
    """An oras client: plain HTTP only to a loopback registry (or on --insecure-registry)."""
    try:
        import oras.client
    except ImportError:
        raise UserError("oras (oras-py) is not installed", hint="pip install oras (CI: bash .ci/supply_chain.sh)") from None
    return oras.client.OrasClient(hostname=host, insecure=insecure or is_loopback(host))


def push_blobs_and_manifest(host: str, repository: str, tag: str, blobs: list[tuple[Path, dict]],
                            manifest: bytes, media_type: str, insecure: bool = False) -> Pushed:
    """Upload each (file, descriptor) the registry lacks, then PUT `manifest` under `tag`."""
    reg = client(host, insecure)
    container = reg.get_container(f"{host}/{repository}:{tag}")
    uploaded = reused = 0
    try:
        for path, desc in blobs:
            if reg.blob_exists(desc, container):
                reused += desc["size"]
                continue
            resp = reg.upload_blob(str(path), container, desc, do_chunked=desc["size"] > LARGE)
            reg._check_200_response(resp)
            uploaded += desc["size"]
        url = f"{reg.prefix}://{container.manifest_url()}"
        resp = reg.do_request(url, "PUT", headers={"Content-Type": media_type}, data=manifest)
        reg._check_200_response(resp)
    except UserError:
        raise
    except Exception as exc:  # requests' and oras' errors: one line naming the registry
        raise UserError(f"pushing {host}/{repository}:{tag} failed: {exc}", field="--registry",
                        hint="is the registry running and writable? (CI: bash .ci/registry.sh)") from None
    digest = oci_digest(manifest)
    got = resp.headers.get("Docker-Content-Digest")
    if got and got != digest:
        raise UserError(f"the registry stored {host}/{repository}:{tag} as {got}, not {digest}", field="--registry")
    return Pushed(f"{host}/{repository}@{digest}", f"{host}/{repository}:{tag}", uploaded, reused)


def push_artifact(artifact, host: str, repository: str, tag: str, insecure: bool = False) -> Pushed:
    """Push a ModelArtifact: its config, one blob per file, then the manifest."""
    with tempfile.TemporaryDirectory(prefix="packager-oras-") as tmp:
        config = Path(tmp) / "config.json"
        config.write_bytes(artifact.config)
        manifest = json.loads(artifact.manifest)
        blobs = [(config, manifest["config"])] + [(f.path, f.descriptor()) for f in artifact.files]
        return push_blobs_and_manifest(host, repository, tag, blobs, artifact.manifest, manifest["mediaType"],
                                       insecure)


def get_manifest(host: str, repository: str, reference: str, insecure: bool = False) -> tuple[bytes, str]:
    """(raw manifest bytes, digest) of repository:reference (a tag or sha256:...)."""
    reg = client(host, insecure)
    sep = "@" if reference.startswith("sha256:") else ":"
    container = reg.get_container(f"{host}/{repository}{sep}{reference}")
    accept = ", ".join(["application/vnd.oci.image.manifest.v1+json", "application/vnd.oci.image.index.v1+json",
                        "application/vnd.docker.distribution.manifest.v2+json"])
    resp = reg.do_request(f"{reg.prefix}://{container.manifest_url()}", "GET", headers={"Accept": accept})
    if resp.status_code != 200:
        raise UserError(f"{host}/{repository}{sep}{reference}: the registry answered {resp.status_code}",
                        field="REF", hint="check the reference (host:port/repository:tag)")
    return resp.content, oci_digest(resp.content)
