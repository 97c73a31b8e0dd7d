"""`verify HOST:PORT/REPO:TAG` (and `deploy --keys`): a release read back out of a registry, trusting nothing it serves.

The statement is fetched from REPO:TAG-release and its signature checked first; it must be the
release of that repository and tag. Every part is then fetched *by the digest the statement
gives it* from that one repository (where `import` put them), into a layout in the caller's temp
dir, as served: the checks that follow name a tampered blob by its file, and a manifest is only
parsed for shape until its bytes hash to the signed digest.
"""
from __future__ import annotations

from pathlib import Path

from packager.errors import UserError
from packager.supply import oci_layout as L, statement as S
from packager.supply.keys import KeySet
from packager.supply.pull import BadInput, _get
from packager.supply.verify import Expect, Report, check_parts, check_statement
from runtimes import oci_ref
from runtimes.digests import oci_digest

ACCEPT = "application/vnd.oci.image.manifest.v1+json"


def _read(url: str, limit: int, accept: str | None = None) -> bytes:
    with _get(url, accept) as r:
        data = r.read(limit + 1)
    if len(data) > limit:
        raise BadInput(f"{url}: more than the {limit} bytes this part may have")
    return data


def parse_release_ref(ref: str) -> tuple[str, str, str]:
    parsed = oci_ref.parse_remote(ref)
    host, repo, tag = parsed.registry, parsed.repository, parsed.tag
    if "@" in ref or not repo or not tag or not oci_ref.is_registry_host(host) or not S.REPOSITORY.fullmatch(repo) \
            or not S.VERSION.fullmatch(tag):
        raise UserError(f"{ref!r} is neither a bundle file nor HOST:PORT/REPOSITORY:TAG", field="BUNDLE|REF",
                        hint="pass the .tar from `packager bundle`, or the imported image by tag")
    return host, repo, tag


def verify_ref(ref: str, keys: KeySet, tmp: Path, expect: Expect = Expect()) -> Report:
    """The release at REF, fetched into `tmp`/layout and checked; the Report keeps the layout for its caller."""
    host, repo, tag = parse_release_ref(ref)
    base = f"{'http' if oci_ref.is_loopback(host) else 'https'}://{host}/v2/{repo}"
    lay = L.Layout(tmp / "layout").init()
    rep = Report(layout=lay)
    where = f"{host}/{repo}:{tag}-{S.REF}"
    try:
        raw = _read(f"{base}/manifests/{tag}-{S.REF}", L.MAX_JSON, ACCEPT)
    except BadInput as exc:
        rep.add(False, "release statement", str(exc))
        return rep
    layers = [ly for ly in L.parse_manifest(raw, f"release statement at {where}")["layers"]
              if ly["mediaType"] == S.ENVELOPE_TYPE]
    if len(layers) != 1:
        raise L.Malformed(f"release statement at {where}", f"{len(layers)} layers of type {S.ENVELOPE_TYPE}, not one")
    try:
        envelope = _read(f"{base}/blobs/{layers[0]['digest']}", S.MAX_ENVELOPE)
    except BadInput as exc:
        rep.add(False, "release statement", str(exc))
        return rep
    if oci_digest(envelope) != layers[0]["digest"]:
        rep.add(False, "release statement", f"envelope {layers[0]['digest']} altered in the registry")
        return rep
    st = check_statement(envelope, keys, expect, rep)
    if st is None:
        return rep
    try:
        S.check_served_at(st, repo, tag)
    except S.Refused as exc:
        rep.statement = None
        rep.add(False, "release statement", str(exc))
        return rep
    for part in S.PARTS:
        fetch_part(lay, base, part, st.digests[part], rep)
    check_parts(lay, keys, tmp, rep)
    return rep


def fetch_part(lay: L.Layout, base: str, part: str, digest: str, rep: Report) -> None:
    """A part's manifest by its signed digest and every blob it names, as served (checked afterwards)."""
    try:
        raw = _read(f"{base}/manifests/{digest}", L.MAX_JSON, ACCEPT)
    except BadInput as exc:
        rep.add(False, part, str(exc))
        return
    lay.blob_path(digest).write_bytes(raw)  # under the signed digest: check_part says whether they are its bytes
    manifest = L.parse_manifest(raw, part)
    if oci_digest(raw) != digest:
        return  # nothing an altered manifest names is fetched
    for blob in [manifest["config"], *manifest["layers"]]:
        path = lay.blob_path(blob["digest"])
        if path.exists():
            continue
        try:
            with _get(f"{base}/blobs/{blob['digest']}") as r, open(path, "wb") as f:
                left = blob["size"] + 1  # one byte more than named: a longer blob is caught, not stored whole
                while left > 0 and (block := r.read(min(left, 1 << 22))):
                    f.write(block)
                    left -= len(block)
        except BadInput as exc:
            path.unlink(missing_ok=True)
            rep.add(False, part, str(exc))
