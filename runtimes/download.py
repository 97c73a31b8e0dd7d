"""Weights downloads for volume-mode images (the launcher, at start).

A token goes only where it is meant to: to the Hub (or the mirror asked
for) over HTTPS, plain HTTP only on loopback, never to a redirect target
(the Hub's CDN URLs are signed; they need none), never into a log line or a
file. Every file is checked against the plan's sha256 where one is recorded.

From the Hub: `huggingface_hub.hf_hub_download` at the pinned revision (it
strips the token itself when the Hub redirects to a CDN, and retries a
dropped transfer from where it stopped). From a plain mirror
(PACKAGER_WEIGHTS_URL): our own reader, which keeps a `.part` file so an
interrupted download resumes on the next start.
"""
from __future__ import annotations

import hashlib
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Callable, Mapping

from runtimes.digests import sha256_file
from runtimes.oci_ref import is_loopback_name

HUB = "https://huggingface.co"
Log = Callable[[str], None]


class DownloadError(Exception):
    """One line saying what failed and what happens next; never holds a token."""


def token_file(path: str | None) -> str | None:
    """A token in a mounted Secret file (HF_TOKEN_PATH, as huggingface_hub names it)."""
    if not path:
        return None
    try:
        return Path(path).read_text(encoding="utf-8").strip() or None
    except OSError as exc:
        raise DownloadError(f"HF_TOKEN_PATH={path}: cannot read the token file: {exc.strerror}") from None


def _check_scheme(url: str, token: str | None) -> None:
    parts = urllib.parse.urlsplit(url)
    if token and parts.scheme != "https" and not is_loopback_name(parts.hostname or ""):
        raise DownloadError(f"refusing to send the weights token over {parts.scheme}:// to {parts.hostname}")


def _redact(text: str, token: str | None) -> str:
    return text.replace(token, "<token>") if token else text


def _cached(target: Path, want: str, log: Log) -> bool:
    if target.is_file() and (not want or sha256_file(target) == want):
        log(f"weights: {target} already in the cache")
        return True
    return False


def from_hub(repo: str, revision: str, files: Mapping[str, str], dest: Path, token: str | None, endpoint: str,
             log: Log) -> None:
    """Each file of `repo` at `revision` into `dest`, verified."""
    _check_scheme(endpoint, token)
    import huggingface_hub
    from huggingface_hub import constants

    # The chart sets HF_HUB_OFFLINE=1 so the engine never reaches the Hub; this
    # download, asked for explicitly, is the one exception.
    constants.HF_HUB_OFFLINE = False
    for rel, want in files.items():
        target = dest / rel
        if _cached(target, want, log):
            continue
        log(f"weights: downloading {rel} from {repo}@{revision}")
        try:
            got = Path(huggingface_hub.hf_hub_download(repo, rel, revision=revision, local_dir=str(dest),
                                                       token=token or False, endpoint=endpoint))
        except Exception as exc:  # network, auth, missing file: one line, no traceback, no token
            raise DownloadError(f"downloading {rel} from {repo}@{revision} failed: "
                                f"{type(exc).__name__}: {_redact(str(exc), token).splitlines()[0]}; "
                                "the next start tries again") from None
        if want and sha256_file(got) != want:
            got.unlink(missing_ok=True)
            raise DownloadError(f"downloaded {rel} from {repo}@{revision}: sha256 does not match the plan's {want}")


def from_url(url: str, target: Path, want: str, token: str | None, log: Log) -> None:
    """One file from a plain mirror: resumed from its .part, checked against its sha256.
    The token is an unredirected header: a redirect target never receives it."""
    if _cached(target, want, log):
        return
    _check_scheme(url, token)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".part")
    have = tmp.stat().st_size if tmp.is_file() else 0
    req = urllib.request.Request(url)
    if token:
        req.add_unredirected_header("Authorization", f"Bearer {token}")
    if have:
        req.add_header("Range", f"bytes={have}-")
    log(f"weights: downloading {url}" + (f" (resuming at {have} bytes)" if have else ""))
    h = hashlib.sha256()
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            resumed = have and resp.status == 206
            if resumed:
                with open(tmp, "rb") as old:
                    while block := old.read(1 << 22):
                        h.update(block)
            length = resp.headers.get("Content-Length")
            got = 0
            with open(tmp, "ab" if resumed else "wb") as out:
                while block := resp.read(1 << 22):
                    h.update(block)
                    out.write(block)
                    got += len(block)
            if length is not None and got < int(length):  # the connection dropped early
                raise ConnectionError(f"connection closed {int(length) - got} bytes early")
    except OSError as exc:  # the .part stays: the next start resumes it
        size = tmp.stat().st_size if tmp.is_file() else 0
        raise DownloadError(f"downloading {url} stopped after {size} bytes: {exc}; the next start resumes it") from None
    if want and h.hexdigest() != want:
        tmp.unlink(missing_ok=True)
        raise DownloadError(f"downloaded {url}: sha256 {h.hexdigest()}, expected {want}")
    tmp.rename(target)


def snapshot(repo: str, revision: str, dest: Path, token: str | None, endpoint: str, log: Log) -> list[str]:
    """A whole repo at `revision` into `dest` (no checksums were recorded at package time); the
    files it holds, relative to `dest`. huggingface_hub resumes and skips what is already there."""
    _check_scheme(endpoint, token)
    import huggingface_hub
    from huggingface_hub import constants

    constants.HF_HUB_OFFLINE = False  # asked for explicitly, as in from_hub
    log(f"weights: downloading {repo}@{revision} into {dest}")
    try:
        huggingface_hub.snapshot_download(repo, revision=revision, local_dir=str(dest), token=token or False,
                                          endpoint=endpoint)
    except Exception as exc:  # network, auth, missing repo: one line, no traceback, no token
        raise DownloadError(f"downloading {repo}@{revision} failed: {type(exc).__name__}: "
                            f"{_redact(str(exc), token).splitlines()[0]}; the next start tries again") from None
    return sorted(str(p.relative_to(dest)) for p in dest.rglob("*")
                  if p.is_file() and not any(part.startswith(".") for part in p.relative_to(dest).parts))
