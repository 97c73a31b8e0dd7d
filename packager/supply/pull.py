"""The modelcar: fetch a ModelPack artifact's files into a directory, every byte checked.

    python -m packager.supply.pull HOST/REPO@sha256:DIGEST --dest DIR [--plain-http]

Runs in the chart's init container (the model image's own Python, standard library only) for
clusters without image volumes, and on a host to fill a volume. The reference is pinned by
digest: the manifest must hash to it, and every file to its layer digest. Files already in
DIR with the right digest are kept, and a manifest copy kept in DIR makes a filled volume
verifiable with no network at all. Exit 0: every file verified; 1: a file or the manifest
did not verify (named); 2: bad input or the registry could not be read.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

from runtimes.digests import oci_digest, oci_digest_file  # stdlib-only: fine in the modelcar
from runtimes.oci_ref import is_loopback as loopback, parse_remote

FILEPATH = "org.cncf.model.filepath"
MANIFEST_COPY = ".modelpack-manifest.json"
ACCEPT = "application/vnd.oci.image.manifest.v1+json"


class Failed(Exception):
    """A digest did not match: exit 1."""


class BadInput(Exception):
    """Exit 2."""


def parse_ref(ref: str) -> tuple[str, str, str]:
    parsed = parse_remote(ref)
    host, repo, digest = parsed.registry, parsed.repository, parsed.digest
    if parsed.tag or not repo or not digest.startswith("sha256:") or len(digest) != 71:
        raise BadInput(f"{ref!r}: expected HOST[:PORT]/REPOSITORY@sha256:<64 hex> (a pinned artifact)")
    return host, repo, digest


def _get(url: str, accept: str | None = None):
    req = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    try:
        return urllib.request.urlopen(req, timeout=60)
    except (urllib.error.URLError, OSError) as exc:
        raise BadInput(f"cannot read {url}: {exc}") from None


def manifest_for(base: str, repo: str, digest: str, dest: Path) -> bytes:
    """The pinned manifest's bytes: DIR's copy when it hashes to the digest, else the registry's."""
    copy = dest / MANIFEST_COPY
    if copy.is_file() and oci_digest(copy.read_bytes()) == digest:
        return copy.read_bytes()
    with _get(f"{base}/v2/{repo}/manifests/{digest}", ACCEPT) as r:
        raw = r.read()
    got = oci_digest(raw)
    if got != digest:
        raise Failed(f"manifest: sha256 {got} != pinned {digest}")
    return raw


def safe_target(dest: Path, rel: str) -> Path:
    target = (dest / rel).resolve()
    if not rel or rel.startswith("/") or not target.is_relative_to(dest.resolve()) or target == dest.resolve():
        raise Failed(f"layer filepath {rel!r} leaves {dest}")
    return target


def pull(ref: str, dest: Path, plain_http: bool = False, log=print) -> list[str]:
    host, repo, digest = parse_ref(ref)
    scheme = "http" if plain_http or loopback(host) else "https"
    base = f"{scheme}://{host}"
    dest.mkdir(parents=True, exist_ok=True)
    raw = manifest_for(base, repo, digest, dest)
    manifest = json.loads(raw)
    done = []
    for layer in manifest.get("layers", []):
        rel = (layer.get("annotations") or {}).get(FILEPATH)
        if not rel:
            raise Failed(f"layer {layer.get('digest')} has no {FILEPATH} annotation")
        target = safe_target(dest, rel)
        if target.is_file() and target.stat().st_size == layer["size"] and oci_digest_file(target) == layer["digest"]:
            log(f"modelcar: {rel} present, sha256 ok")
            done.append(rel)
            continue
        if target.exists():
            log(f"modelcar: {rel} present but not the artifact's bytes: fetching it again")
        target.parent.mkdir(parents=True, exist_ok=True)
        part = target.with_name(target.name + ".part")
        h = hashlib.sha256()
        with _get(f"{base}/v2/{repo}/blobs/{layer['digest']}") as r, open(part, "wb") as f:
            while block := r.read(1 << 22):
                h.update(block)
                f.write(block)
        if f"sha256:{h.hexdigest()}" != layer["digest"]:
            part.unlink()
            raise Failed(f"{rel}: sha256 sha256:{h.hexdigest()} != layer {layer['digest']}")
        os.replace(part, target)
        log(f"modelcar: {rel} fetched, sha256 ok ({layer['size']} bytes)")
        done.append(rel)
    copy = dest / MANIFEST_COPY
    if not copy.is_file() or copy.read_bytes() != raw:  # a filled, read-only-to-us volume is left as it is
        copy.write_bytes(raw)  # after every file verified: a filled volume checks offline
    return done


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m packager.supply.pull", description=__doc__.split("\n\n")[0])
    ap.add_argument("ref", help="HOST[:PORT]/REPOSITORY@sha256:DIGEST")
    ap.add_argument("--dest", required=True, type=Path)
    ap.add_argument("--plain-http", action="store_true", help="HTTP to a registry off loopback (on your word)")
    args = ap.parse_args(argv)
    try:
        files = pull(args.ref, args.dest, args.plain_http, log=lambda m: print(m, flush=True))
    except Failed as exc:
        print(f"modelcar: FAILED: {exc}", file=sys.stderr)
        return 1
    except BadInput as exc:
        print(f"modelcar: error: {exc}", file=sys.stderr)
        return 2
    print(f"modelcar: {len(files)} file(s) verified in {args.dest}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
