"""The release statement: one in-toto Statement v1 naming every part of a release by digest, in a
DSSE envelope signed with the weights key of `packager keys init` (EC P-256, ECDSA over SHA-256).

That key, because model-signing already uses it for exactly this (its signature is an in-toto
statement in a DSSE envelope), because checking it needs only `cryptography` (no gpg home), and
because the predicate type keeps the two statements apart: a weights signature is never taken
for a release. `verify` opens the envelope first; everything else is then found by the digests
inside it, and the names `import` pushes to are made from its identity and version alone.

    {"_type": "https://in-toto.io/Statement/v1",
     "subject": [{"name": "image", "digest": {"sha256": "..."}, "mediaType": "..."}, ...],
     "predicateType": "https://packager.dev/release/v1",
     "predicate": {"identity": "packager/smollm2-135m-instruct", "version": "0.1.0-cpu-oci",
                   "model": {"name": ..., "served_model_name": ..., "profile": ...},
                   "image": {"signed_identity": "HOST/packager/smollm2-135m-instruct:0.1.0-cpu-oci"},
                   "chart": {"archive": "smollm2-135m-instruct-0.1.0.tgz"}, "packager": "0.1.0"}}
"""
from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from pathlib import Path

from packager.errors import UserError
from packager.supply.oci_layout import json_value

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://packager.dev/release/v1"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
ENVELOPE_TYPE = "application/vnd.dev.packager.release.dsse.v1+json"  # the envelope blob in a bundle
ARTIFACT_TYPE = "application/vnd.dev.packager.release.v1"  # the artifact manifest that carries it
REF = "release"  # its ref name in a bundle's index, and its tag suffix in a registry
MAX_ENVELOPE = 1 << 20

PARTS = ("image", "weights", "chart", "plan", "sbom", "signatures")  # OCI manifests, by digest
BLOBS = {  # files inside a part, by digest: name -> the part whose manifest lists it
    "chart/archive": "chart", "chart/provenance": "chart", "plan/plan.json": "plan", "sbom/sbom.cdx.json": "sbom",
    "signatures/weights": "signatures"}
IMAGE_SIGNATURE = re.compile(r"signatures/image-[1-9][0-9]?")  # simple signatures, in lookaside order
REPOSITORY = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*")
VERSION = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,99}")  # a tag, with room for `-signatures`
ARCHIVE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_+-]*(?:\.[A-Za-z0-9_+-]+)*\.tgz")  # one file name, no '..'


class Refused(Exception):
    """The statement does not verify, or is not the release asked for: exit 1."""


def _bad(what: str) -> UserError:
    return UserError(what, field="release statement",
                     hint="the bundle or registry holds no release `packager bundle` signed: get it again from its source")


@dataclass(frozen=True)
class Statement:
    raw: dict
    digests: dict[str, str]  # subject name -> sha256:<hex>
    media_types: dict[str, str]
    identity: str  # the release's repository path (no registry host)
    version: str  # its tag
    signed_identity: str  # the docker reference the image's simple signature names
    chart_archive: str  # the chart archive's file name (Helm's .prov names it)
    model: dict

    @property
    def image_signatures(self) -> list[str]:
        names = sorted((n for n in self.digests if IMAGE_SIGNATURE.fullmatch(n)), key=lambda n: int(n.rsplit("-", 1)[1]))
        return [self.digests[n] for n in names]

    def tag(self, part: str) -> str:
        """Where a part lives in a registry, relative to the repository `identity`: one repository for all."""
        return self.version if part == "image" else f"{self.version}-{part}"

    def targets(self, prefix: str = "") -> dict[str, str]:
        """part -> PREFIX/IDENTITY:TAG, every name made from signed content (and the user's prefix)."""
        repo = "/".join(p for p in (prefix, self.identity) if p)
        return {part: f"{repo}:{self.tag(part)}" for part in (*PARTS, REF)}


def make(subjects: list[tuple[str, str, str]], *, identity: str, version: str, model: dict, signed_identity: str,
         chart_archive: str, packager_version: str) -> dict:
    """The statement over (name, digest, mediaType) subjects; checked as `verify` will check it."""
    statement = {"_type": STATEMENT_TYPE,
                 "subject": [{"name": n, "digest": {"sha256": d.removeprefix("sha256:")}, "mediaType": t}
                             for n, d, t in subjects],
                 "predicateType": PREDICATE_TYPE,
                 "predicate": {"identity": identity, "version": version, "model": model,
                               "image": {"signed_identity": signed_identity}, "chart": {"archive": chart_archive},
                               "packager": packager_version}}
    parse(statement)
    return statement


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE's pre-authentication encoding: what the signature covers."""
    t = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


def sign(statement: dict, private_key: Path, keyid: str) -> bytes:
    """The DSSE envelope (JSON bytes) over the statement, signed with the EC private key."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    payload = json.dumps(statement, sort_keys=True, separators=(",", ":")).encode()
    key = serialization.load_pem_private_key(private_key.read_bytes(), password=None)
    sig = key.sign(pae(PAYLOAD_TYPE, payload), ec.ECDSA(hashes.SHA256()))
    envelope = {"payloadType": PAYLOAD_TYPE, "payload": base64.b64encode(payload).decode(),
                "signatures": [{"keyid": keyid, "sig": base64.b64encode(sig).decode()}]}
    return json.dumps(envelope, sort_keys=True, indent=1).encode()


def open_envelope(data: bytes, public_key: Path) -> Statement:
    """The signed statement, after the signature verified with `public_key`.

    Refused: the signature does not verify; UserError (exit 2): no envelope or statement at all."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    if len(data) > MAX_ENVELOPE:
        raise _bad(f"{len(data)} bytes, over the {MAX_ENVELOPE} an envelope may have")
    try:
        env = json_value(data)
        payload = base64.b64decode(env["payload"], validate=True)
        sigs = [base64.b64decode(s["sig"], validate=True) for s in env["signatures"][:8]]
        ptype = env["payloadType"]
        if not isinstance(ptype, str):
            raise TypeError("payloadType is not text")
    except (ValueError, KeyError, TypeError, IndexError, UnicodeDecodeError) as exc:
        raise _bad(f"not a DSSE envelope ({exc.__class__.__name__}: {exc})") from None
    if ptype != PAYLOAD_TYPE:
        raise Refused(f"payloadType {ptype!r} is not {PAYLOAD_TYPE}")
    key = serialization.load_pem_public_key(public_key.read_bytes())
    for sig in sigs:
        try:
            key.verify(sig, pae(ptype, payload), ec.ECDSA(hashes.SHA256()))
            break
        except InvalidSignature:
            continue
    else:
        raise Refused(f"no signature by {public_key.name} ({len(sigs)} signature(s), none verifies)")
    try:
        doc = json_value(payload)
    except ValueError as exc:
        raise _bad(f"the signed payload is not JSON ({exc})") from None
    return parse(doc)


def parse(doc: object) -> Statement:
    """A statement's fields, each checked (shape, names that become registry names and file names)."""
    if not isinstance(doc, dict) or doc.get("_type") != STATEMENT_TYPE:
        raise _bad(f"_type is not {STATEMENT_TYPE}")
    if doc.get("predicateType") != PREDICATE_TYPE:
        raise Refused(f"predicateType {doc.get('predicateType')!r} is not a packager release ({PREDICATE_TYPE})")
    digests, types = {}, {}
    for i, s in enumerate(doc.get("subject") if isinstance(doc.get("subject"), list) else [None]):
        s = s if isinstance(s, dict) else {}
        name, hexd = s.get("name"), s["digest"].get("sha256") if isinstance(s.get("digest"), dict) else None
        if not isinstance(name, str) or not isinstance(hexd, str) or not re.fullmatch(r"[0-9a-f]{64}", hexd) \
                or not isinstance(s.get("mediaType", ""), str) or name in digests:
            raise _bad(f"subject[{i}] is not a unique name with a sha256 digest")
        digests[name], types[name] = f"sha256:{hexd}", s.get("mediaType", "")
    missing = [n for n in (*PARTS, *BLOBS) if n not in digests]
    if missing or not any(IMAGE_SIGNATURE.fullmatch(n) for n in digests):
        raise _bad(f"subject names no {', '.join(missing) or 'image signature'}")
    p = doc.get("predicate") if isinstance(doc.get("predicate"), dict) else {}
    identity, version = p.get("identity"), p.get("version")
    signed = (p.get("image") or {}).get("signed_identity") if isinstance(p.get("image"), dict) else None
    archive = (p.get("chart") or {}).get("archive") if isinstance(p.get("chart"), dict) else None
    model = p.get("model")
    if not isinstance(identity, str) or not REPOSITORY.fullmatch(identity) or len(identity) > 200:
        raise _bad(f"predicate.identity {identity!r} is not a repository path")
    if not isinstance(version, str) or not VERSION.fullmatch(version):
        raise _bad(f"predicate.version {version!r} is not a tag")
    if not isinstance(signed, str) or not signed.endswith(f"/{identity}:{version}"):
        raise _bad(f"predicate.image.signed_identity {signed!r} does not name {identity}:{version}")
    if not isinstance(archive, str) or not ARCHIVE.fullmatch(archive) or len(archive) > 200:
        raise _bad(f"predicate.chart.archive {archive!r} is not a chart archive's file name")
    if not isinstance(model, dict) or not isinstance(model.get("name"), str):
        raise _bad("predicate.model.name is missing")
    return Statement(doc, digests, types, identity, version, signed, archive, model)


def check_expected(st: Statement, version: str | None, identity: str | None) -> None:
    """--expect-version / --expect-identity: a validly signed older or foreign release is still refused."""
    if identity is not None and st.identity != identity:
        raise Refused(f"this release is {st.identity}, not the expected {identity}")
    if version is not None and st.version != version:
        raise Refused(f"this release is version {st.version}, not the expected {version} (an older or other release)")


def check_served_at(st: Statement, repository: str, tag: str) -> str:
    """A statement fetched from REPOSITORY:TAG-release must be that release; returns the site prefix."""
    if tag != st.version or not (repository == st.identity or repository.endswith("/" + st.identity)):
        raise Refused(f"the registry serves release {st.identity}:{st.version} under {repository}:{tag}")
    return repository[: len(repository) - len(st.identity)].rstrip("/")
