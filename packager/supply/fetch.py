"""Copy an artifact out of a registry into a layout *without* trusting it: bytes as served.

`verify REF` checks what it fetched afterwards, blob by blob, so a tampered weight file is
reported by its file name (skopeo would stop at the first bad blob with a digest error).
"""
from __future__ import annotations

import json
from pathlib import Path

from packager.supply import oci_layout as L
from packager.supply.pull import ACCEPT, BadInput, _get
from runtimes.oci_ref import is_loopback, parse_remote


def fetch_artifact(lay: L.Layout, ref: str, role: str) -> L.Entry:
    """ref = HOST/REPO:TAG or HOST/REPO@sha256:...; the manifest and its blobs land in `lay` as served."""
    parsed = parse_remote(ref)
    host, repo, reference = parsed.registry, parsed.repository, parsed.digest or parsed.tag
    rest = ref.partition("/")[2]
    base = f"{'http' if is_loopback(host) else 'https'}://{host}"
    with _get(f"{base}/v2/{repo}/manifests/{reference}", ACCEPT) as r:
        raw = r.read()
    manifest = json.loads(raw)
    desc = lay.add_bytes(raw, manifest.get("mediaType", ACCEPT))
    for blob in [manifest.get("config"), *manifest.get("layers", [])]:
        if not blob:
            continue
        path = lay.blob_path(blob["digest"])
        if path.exists():
            continue
        with _get(f"{base}/v2/{repo}/blobs/{blob['digest']}") as r, open(path, "wb") as f:
            while block := r.read(1 << 22):
                f.write(block)
    if manifest.get("artifactType"):
        desc["artifactType"] = manifest["artifactType"]
    return lay.name(role, desc, rest)


__all__ = ["fetch_artifact", "BadInput"]
