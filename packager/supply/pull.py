"""The modelcar: fetch a ModelPack artifact's files into a directory, every byte checked.

    python -m packager.supply.pull HOST/REPO@sha256:DIGEST --dest DIR [--plain-http]

Runs in the chart's init container (the model image's own Python, standard library only) for
clusters without image volumes, and on a host to fill a volume. The reference is pinned by
digest: the manifest must hash to it, and every file to its layer digest. Files already in
DIR with the right digest are kept, and a manifest copy kept in DIR makes a filled volume
verifiable with no network at all. Exit 0: every file verified; 1: a file or the manifest
did not verify (named); 2: bad input, the registry could not be read, or the deadline passed.

What a registry serves is bounded: the manifest by MAX_MANIFEST, each blob by the size the pinned
manifest declares (one byte more is a failure, never a full disk), the whole pull by --deadline
(default 15 min + 18 s per GiB declared: KAITO's startup budget), and redirects (registries send
blobs to a CDN) are followed only to https, or to loopback http from loopback http.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from packager.supply.oci_layout import DIGEST, MAX_JSON as MAX_MANIFEST, json_value  # stdlib-only, as these two:
from runtimes.digests import oci_digest, oci_digest_file  # fine in the modelcar
from runtimes.oci_ref import is_loopback as loopback, parse_remote

FILEPATH = "org.cncf.model.filepath"
MANIFEST_COPY = ".modelpack-manifest.json"
ACCEPT = "application/vnd.oci.image.manifest.v1+json"
SOCKET_TIMEOUT = 60.0


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


class _Redirects(urllib.request.HTTPRedirectHandler):
    """Follow a redirect only to https, or from loopback http to loopback http: never a downgrade
    to plain http elsewhere, never ftp."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        old, new = urllib.parse.urlsplit(req.full_url), urllib.parse.urlsplit(urllib.parse.urljoin(req.full_url, newurl))
        if not (new.scheme == "https" or (new.scheme == old.scheme == "http" and loopback(old.netloc)
                                          and loopback(new.netloc))):
            raise BadInput(f"{req.full_url}: redirected to {new.scheme}://{new.netloc}; only https (or loopback "
                           "http from loopback http) is followed")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_OPENER = urllib.request.build_opener(_Redirects)


def _get(url: str, accept: str | None = None, timeout: float = SOCKET_TIMEOUT):
    req = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    try:
        return _OPENER.open(req, timeout=max(1.0, min(SOCKET_TIMEOUT, timeout)))
    except (urllib.error.URLError, OSError) as exc:
        raise BadInput(f"cannot read {url}: {exc}") from None


def _copy(r, out, size: int, what: str, deadline: float, exact: bool = True) -> str:
    """Copy a response into `out`: `size` bytes (`exact`) or at most that many. Each read is one socket
    receive (read1), so neither a longer body nor a slow drip outlasts the cap or the deadline.
    Returns the bytes' OCI digest."""
    h, left = hashlib.sha256(), size
    while True:
        if time.monotonic() > deadline:
            raise BadInput(f"{what}: not read within the deadline ({size - left} bytes so far); raise --deadline "
                           "or check the registry's speed")
        block = r.read1(min(1 << 20, left + 1))  # one byte past the size shows a longer body
        if not block:
            break
        left -= len(block)
        if left < 0:
            raise Failed(f"{what}: the registry sent more than the {size} bytes "
                         f"{'the manifest declares' if exact else 'a manifest may have'}")
        h.update(block)
        out.write(block)
    if exact and left:
        raise Failed(f"{what}: the registry sent {size - left} of the {size} bytes the manifest declares")
    return "sha256:" + h.hexdigest()


def layers_of(manifest: object) -> list[tuple[str, str, int]]:
    """(filepath, digest, size) of every layer, checked for shape before any is used."""
    layers = manifest.get("layers") if isinstance(manifest, dict) else None
    if not isinstance(layers, list):
        raise BadInput("manifest: layers is missing or not a list")
    out, seen = [], set()
    for i, ly in enumerate(layers):
        ann = ly.get("annotations") if isinstance(ly, dict) else None
        rel = ann.get(FILEPATH) if isinstance(ann, dict) else None
        digest, size = (ly.get("digest"), ly.get("size")) if isinstance(ly, dict) else (None, None)
        if not isinstance(rel, str) or not rel:
            raise Failed(f"layer {digest} has no {FILEPATH} annotation")
        if not isinstance(digest, str) or not DIGEST.fullmatch(digest):
            raise BadInput(f"manifest: layers[{i}].digest {str(digest)[:80]!r} is not sha256:<64 hex>")
        if type(size) is not int or size < 0:
            raise BadInput(f"manifest: layers[{i}].size {str(size)[:40]!r} is not a byte count")
        if rel in seen:
            raise BadInput(f"manifest: layers[{i}] repeats the filepath {rel!r}")
        seen.add(rel)
        out.append((rel, digest, size))
    return out


def default_deadline(total_bytes: int) -> float:
    return 900.0 + 18.0 * total_bytes / 2**30


def manifest_for(base: str, repo: str, digest: str, dest: Path, deadline: float) -> bytes:
    """The pinned manifest's bytes: DIR's copy when it hashes to the digest, else the registry's."""
    copy = dest / MANIFEST_COPY
    if copy.is_file() and copy.stat().st_size <= MAX_MANIFEST and oci_digest(copy.read_bytes()) == digest:
        return copy.read_bytes()
    buf = io.BytesIO()
    with _get(f"{base}/v2/{repo}/manifests/{digest}", ACCEPT, deadline - time.monotonic()) as r:
        got = _copy(r, buf, MAX_MANIFEST, "manifest", deadline, exact=False)
    raw = buf.getvalue()
    if got != digest:
        raise Failed(f"manifest: sha256 {got} != pinned {digest}")
    return raw


def safe_target(dest: Path, rel: str) -> Path:
    target = (dest / rel).resolve()
    if not rel or rel.startswith("/") or not target.is_relative_to(dest.resolve()) or target == dest.resolve():
        raise Failed(f"layer filepath {rel!r} leaves {dest}")
    return target


def pull(ref: str, dest: Path, plain_http: bool = False, log=print, deadline_s: float | None = None) -> list[str]:
    host, repo, digest = parse_ref(ref)
    scheme = "http" if plain_http or loopback(host) else "https"
    base = f"{scheme}://{host}"
    dest.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    raw = manifest_for(base, repo, digest, dest, started + (deadline_s or 900.0))
    try:
        manifest = json_value(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadInput(f"manifest: not JSON ({exc})") from None
    layers = layers_of(manifest)
    deadline = started + (deadline_s or default_deadline(sum(size for _, _, size in layers)))
    done = []
    for rel, blob, size in layers:
        target = safe_target(dest, rel)
        if target.is_file() and target.stat().st_size == size and oci_digest_file(target) == blob:
            log(f"modelcar: {rel} present, sha256 ok")
            done.append(rel)
            continue
        if target.exists():
            log(f"modelcar: {rel} present but not the artifact's bytes: fetching it again")
        target.parent.mkdir(parents=True, exist_ok=True)
        part = target.with_name(target.name + ".part")
        try:
            with _get(f"{base}/v2/{repo}/blobs/{blob}", timeout=deadline - time.monotonic()) as r, \
                    open(part, "wb") as f:
                got = _copy(r, f, size, rel, deadline)
            if got != blob:
                raise Failed(f"{rel}: sha256 {got} != layer {blob}")
        except BaseException:
            part.unlink(missing_ok=True)
            raise
        os.replace(part, target)
        log(f"modelcar: {rel} fetched, sha256 ok ({size} bytes)")
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
    ap.add_argument("--deadline", type=float, default=None, metavar="SECONDS",
                    help="the whole pull's limit (default: 900 + 18 per GiB the manifest declares)")
    args = ap.parse_args(argv)
    try:
        files = pull(args.ref, args.dest, args.plain_http, log=lambda m: print(m, flush=True),
                     deadline_s=args.deadline)
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
