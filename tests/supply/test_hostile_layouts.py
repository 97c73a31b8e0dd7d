"""A corpus of hostile bundle layouts, each refused before any part is read: malformed index.json and
statement manifests (exit 2, naming the part and field), tars that reach outside, statements that are
unsigned, signed by another key, or validly signed but older or foreign (exit 1). For each: no traceback,
nothing written outside verify's temp dir, and `import` pushes nothing. No image build needed: the
statement is made and signed here (tests/supply/test_hostile_bundles.py rewrites a real bundle)."""
from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from packager.supply import oci_layout as L, statement as S
from tests.supply.conftest import catalog
from tests.supply.tamper import (assert_nothing_written, manifest_of, put_manifest, run_watched, synthetic, thin_pack,
                                 write_index)

CANARY = "escaped"  # a name a hostile bundle aims at, one level above verify's TMPDIR


def _index(lay: L.Layout) -> dict:
    return json.loads((lay.root / "index.json").read_text())


def _edit_index(change):
    def case(lay, keys, other, root):
        index = _index(lay)
        change(index)
        return thin_pack(lay, root / "b.tar", index=json.dumps(index).encode())
    return case


def _edit_statement_manifest(change):
    def case(lay, keys, other, root):
        _, manifest = manifest_of(lay, S.REF)
        change(manifest)
        put_manifest(lay, S.REF, manifest)
        return _pack_raw(lay, root)
    return case


def _pack_raw(lay: L.Layout, root: Path) -> Path:
    """Every file of the layout (a thin one: the statement and its blobs)."""
    with tarfile.open(root / "b.tar", "w") as tar:
        for path in sorted(lay.root.rglob("*")):
            if path.is_file():
                tar.add(path, str(path.relative_to(lay.root)))
    return root / "b.tar"


def _tar_with(members):
    """A tar holding the layout's files plus hostile members (name, kind, data)."""
    def case(lay, keys, other, root):
        out = _pack_raw(lay, root)
        with tarfile.open(out, "a") as tar:
            for name, kind, data in members(root):
                info = tarfile.TarInfo(name)
                if kind == "symlink":
                    info.type, info.linkname = tarfile.SYMTYPE, data
                    tar.addfile(info)
                else:
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
        return out
    return case


def _signed_by_other(lay, keys, other, root):
    return thin_pack(synthetic(root / "other-layout", other), root / "b.tar")


def _resigned(version=None, identity=None, edit=None):
    def case(lay, keys, other, root):
        return thin_pack(synthetic(root / "l2", keys, **{k: v for k, v in (("version", version), ("identity", identity))
                                                         if v}, edit=edit), root / "b.tar")
    return case


def _payload_swapped(lay, keys, other, root):
    """The real signature over one statement, carried with another payload."""
    import base64

    entry, manifest = manifest_of(lay, S.REF)
    env = json.loads(lay.blob_path(manifest["layers"][0]["digest"]).read_bytes())
    doc = json.loads(base64.b64decode(env["payload"]))
    doc["predicate"]["version"] = "9.9.9"
    env["payload"] = base64.b64encode(json.dumps(doc).encode()).decode()
    manifest["layers"] = [lay.add_bytes(json.dumps(env).encode(), S.ENVELOPE_TYPE)]
    put_manifest(lay, S.REF, manifest)
    return _pack_raw(lay, root)


def _altered_envelope(lay, keys, other, root):
    _, manifest = manifest_of(lay, S.REF)
    path = lay.blob_path(manifest["layers"][0]["digest"])
    path.write_bytes(path.read_bytes().replace(b'"sig"', b'"sig" '))
    return _pack_raw(lay, root)


def _not_an_envelope(lay, keys, other, root):
    _, manifest = manifest_of(lay, S.REF)
    manifest["layers"] = [lay.add_bytes(b"{not json", S.ENVELOPE_TYPE)]
    put_manifest(lay, S.REF, manifest)
    return _pack_raw(lay, root)


def _no_statement(lay, keys, other, root):
    write_index(lay, {"schemaVersion": 2, "manifests": []})
    return _pack_raw(lay, root)


def _first(index):
    return index["manifests"][0]


CASES = {
    # (make the bundle, exit code, what stderr/stdout must say, extra verify args)
    "index is not JSON": (lambda lay, k, o, root: thin_pack(lay, root / "b.tar", index=b"{"), 2, r"index.json: not JSON", ()),
    "index schemaVersion": (_edit_index(lambda i: i.update(schemaVersion=3)), 2, r"index.json: schemaVersion 3", ()),
    "index manifests not a list": (_edit_index(lambda i: i.update(manifests={})), 2, r"manifests is missing or not a list", ()),
    "index entry without size": (_edit_index(lambda i: _first(i).pop("size")), 2, r"manifests\[0\]\.size None", ()),
    "index size as text": (_edit_index(lambda i: _first(i).update(size="12")), 2, r"manifests\[0\]\.size '12'", ()),
    "index digest reaching out": (_edit_index(lambda i: _first(i).update(digest="sha256:../../../escaped")), 2,
                                  r"manifests\[0\]\.digest 'sha256:\.\./\.\./\.\./escaped' is not sha256", ()),
    "index annotations not text": (_edit_index(lambda i: _first(i)["annotations"].update(x=1)), 2,
                                   r"manifests\[0\]\.annotations is not a map", ()),
    "index entry not an object": (_edit_index(lambda i: i["manifests"].append("release")), 2, r"manifests\[1\] is not an object", ()),
    "index ref name twice": (_edit_index(lambda i: i["manifests"].append(dict(_first(i)))), 2,
                             r"manifests\[1\] repeats the ref name 'release'", ()),
    "statement manifest without layers": (_edit_statement_manifest(lambda m: m.pop("layers")), 2,
                                          r"release statement manifest: layers is missing", ()),
    "statement layer with negative size": (_edit_statement_manifest(lambda m: m["layers"][0].update(size=-1)), 2,
                                           r"release statement manifest: layers\[0\]\.size -1", ()),
    "statement manifest with two envelopes": (_edit_statement_manifest(lambda m: m["layers"].append(m["layers"][0])), 2,
                                              r"2 layers of type", ()),
    "statement not an envelope": (_not_an_envelope, 2, r"release statement: not a DSSE envelope", ()),
    "member outside the layout": (_tar_with(lambda root: [(f"../../../{CANARY}", "file", b"x")]), 2, r"points outside the bundle", ()),
    "absolute member": (_tar_with(lambda root: [(str(root / CANARY), "file", b"x")]), 2, r"points outside the bundle", ()),
    "symlink member": (_tar_with(lambda root: [("blobs/sha256/link", "symlink", str(root / CANARY))]), 2, r"is a link or device", ()),
    "index.json twice": (_tar_with(lambda root: [("index.json", "file", b'{"schemaVersion":2,"manifests":[]}')]), 2,
                         r"'index.json' appears twice", ()),
    "no release statement": (_no_statement, 1, r"names no 'release' entry", ()),
    "statement signed by another key": (_signed_by_other, 1, r"no signature by model-signing.pub", ()),
    "statement payload swapped": (_payload_swapped, 1, r"no signature by model-signing.pub", ()),
    "statement envelope altered": (_altered_envelope, 1, r"release statement .*envelope sha256:\w+ missing or altered", ()),
    "older version, validly signed": (_resigned(version="0.9-oci"), 1, r"version 0\.9-oci, not the expected 1-oci",
                                      ("--expect-version", "1-oci")),
    "foreign identity, validly signed": (_resigned(identity="other/model"), 1, r"other/model, not the expected packager-test/m",
                                         ("--expect-identity", "packager-test/m")),
    "signed chart archive name reaching out": (_resigned(edit=lambda d: d["predicate"]["chart"].update(archive=f"../../{CANARY}.tgz")),
                                               2, r"predicate\.chart\.archive '\.\./\.\./escaped\.tgz' is not", ()),
    "signed identity reaching out": (_resigned(edit=lambda d: d["predicate"].update(identity="../x")), 2,
                                     r"predicate\.identity '\.\./x' is not a repository path", ()),
}


@pytest.fixture(scope="module")
def other_keys(tmp_path_factory, keys):
    from packager.supply.keys import init_keys

    return init_keys(tmp_path_factory.mktemp("other") / "keys")


def _bundle(case, keys, other_keys, root: Path) -> Path:
    lay = synthetic(root / "layout", keys)
    return CASES[case][0](lay, keys, other_keys, root)


@pytest.mark.parametrize("case", list(CASES))
def test_verify_refuses(case, keys, other_keys, tmp_path):
    bundle = _bundle(case, keys, other_keys, tmp_path)
    _, code, said, extra = CASES[case]
    proc, _ = run_watched("verify", str(bundle), "--keys", str(keys.directory), *extra, root=tmp_path)
    assert proc.returncode == code, proc.stdout + proc.stderr
    assert __import__("re").search(said, proc.stdout + proc.stderr), proc.stdout + proc.stderr
    if code == 2:
        assert proc.stderr.startswith("error: ") and "fix:" in proc.stderr
    else:  # refused at the statement: nothing after it was checked
        assert [line for line in proc.stdout.splitlines() if not line.startswith(("ok    release statement",
                                                                                  "FAIL  release statement"))] == []
    assert_nothing_written(tmp_path, {"layout", "other-layout", "l2", "b.tar"})


def test_import_of_each_pushes_nothing(keys, other_keys, empty_registry, tmp_path):
    for n, case in enumerate(CASES):
        root = tmp_path / f"case{n}"
        root.mkdir()
        bundle = _bundle(case, keys, other_keys, root)
        proc, _ = run_watched("import", str(bundle), "--registry", empty_registry, "--keys", str(keys.directory),
                              "--signatures-dir", str(root / "sigs"), *CASES[case][3], root=root)
        assert proc.returncode == CASES[case][1], f"{case}: {proc.stdout + proc.stderr}"
        assert catalog(empty_registry) == [], case
        assert_nothing_written(root, {"layout", "other-layout", "l2", "b.tar"})


def test_import_needs_keys(tmp_path, run_cli):
    code, _, err = run_cli("import", str(tmp_path / "b.tar"), "--registry", "127.0.0.1:5000")
    assert code == 2 and "--keys" in err
