"""Copy an artifact out of a registry into a layout *without* trusting it: bytes as served.

`verify REF` checks what it fetched afterwards, blob by blob, so a tampered weight file is
reported by its file name (skopeo would stop at the first bad blob with a digest error).
"""
from __future__ import annotations

import json
from pathlib import Path

from packager.supply import layout as L
from packager.supply.pull import ACCEPT, BadInput, _get, loopback


def fetch_artifact(lay: L.Layout, ref: str, role: str) -> L.Entry:
    """ref = HOST/REPO:TAG or HOST/REPO@sha256:...; the manifest and its blobs land in `lay` as served."""
    host, _, rest = ref.partition("/")
    if "@" in rest:
        repo, _, reference = rest.partition("@")
    else:
        repo, _, reference = rest.rpartition(":")
    base = f"{'http' if loopback(host) else 'https'}://{host}"
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
