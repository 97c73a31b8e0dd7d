"""More hostile bundle layouts (the corpus in test_hostile_layouts.py, its helpers): JSON nested past
Python's recursion limit where verify reads JSON before anything is trusted (index.json, the statement's
manifest and envelope, each part's manifest at its signed digest), and a validly signed release whose plan
is not a plan. Each was a traceback; now a malformed index, manifest or envelope is exit 2 naming the
part, and the plan a FAIL line (exit 1). Nothing is written outside verify's temp dir."""
from __future__ import annotations

import base64
import json
import re

import pytest

from packager.supply import oci_layout as L, statement as S
from tests.supply.tamper import (assert_nothing_written, manifest_of, put_manifest, run_watched, set_subject, synthetic,
                                 thin_pack, write_index)
from tests.supply.test_hostile_layouts import _pack_raw

DEEP = b"[" * 100_000  # 100 KB: under every size cap, past json's recursion limit


def _deep_index(lay, keys, root):
    return thin_pack(lay, root / "b.tar", index=DEEP)


def _deep_statement_manifest(lay, keys, root):
    """The index names a statement manifest whose bytes are the deep blob (its digest consistent)."""
    desc = lay.add_bytes(DEEP, L.MANIFEST_TYPE)
    index = lay.index()
    for m in index["manifests"]:
        if m["annotations"][L.REF_NAME] == S.REF:
            m.update(digest=desc["digest"], size=desc["size"])
    write_index(lay, index)
    return _pack_raw(lay, root)


def _deep_envelope(lay, keys, root):
    _, manifest = manifest_of(lay, S.REF)
    manifest["layers"] = [lay.add_bytes(DEEP, S.ENVELOPE_TYPE)]
    put_manifest(lay, S.REF, manifest)
    return _pack_raw(lay, root)


def _deep_part(part):
    """The part's manifest, at the digest the signed statement names, is the deep blob."""
    def case(lay, keys, root):
        _, manifest = manifest_of(lay, S.REF)
        envelope = json.loads(lay.blob_path(manifest["layers"][0]["digest"]).read_bytes())
        doc = json.loads(base64.b64decode(envelope["payload"]))
        digest = next("sha256:" + s["digest"]["sha256"] for s in doc["subject"] if s["name"] == part)
        lay.blob_path(digest).write_bytes(DEEP)
        return _pack_raw(lay, root)
    return case


def _signed_plan(body: bytes):
    """A release signed with the right key whose plan manifest and plan.json are there, the plan not a plan."""
    def case(lay, keys, root):
        plan = L.Layout(root / "plan-parts").init()
        blob = plan.add_bytes(body, "application/json")
        manifest = json.dumps({"schemaVersion": 2, "mediaType": L.MANIFEST_TYPE, "artifactType": "x/plan",
                               "config": plan.add_bytes(b"{}", L.EMPTY_TYPE), "layers": [blob]}).encode()
        desc = plan.add_bytes(manifest, L.MANIFEST_TYPE)

        def edit(doc):
            set_subject(doc, "plan", desc["digest"])
            set_subject(doc, "plan/plan.json", blob["digest"])
        signed = synthetic(root / "l2", keys, edit=edit)
        for path in (plan.root / "blobs" / "sha256").iterdir():
            (signed.root / "blobs" / "sha256" / path.name).write_bytes(path.read_bytes())
        return _pack_raw(signed, root)
    return case


CASES = {
    # (make the bundle, exit code, what stdout/stderr must say)
    "index nested too deeply": (_deep_index, 2, r"index\.json: not JSON \(nested too deeply\)"),
    "statement manifest nested too deeply": (_deep_statement_manifest, 2,
                                             r"release statement manifest: not JSON \(nested too deeply\)"),
    "statement envelope nested too deeply": (_deep_envelope, 2, r"release statement: not a DSSE envelope "
                                                                r"\(ValueError: nested too deeply\)"),
    **{f"{part} manifest nested too deeply": (_deep_part(part), 2, rf"{part} manifest: not JSON \(nested too deeply\)")
       for part in S.PARTS},
    "signed plan whose selected is text": (_signed_plan(b'{"model": {"name": "m"}, "selected": "p"}'), 1,
                                           r"FAIL  plan .*does not read as a plan"),
    "signed plan that is a list": (_signed_plan(b"[1]"), 1, r"FAIL  plan .*does not read as a plan"),
    "signed plan nested too deeply": (_signed_plan(DEEP), 1, r"FAIL  plan .*does not read as a plan \(nested too deeply\)"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_verify_names_the_part_without_a_traceback(case, keys, tmp_path):
    make, code, said = CASES[case]
    bundle = make(synthetic(tmp_path / "layout", keys), keys, tmp_path)
    proc, _ = run_watched("verify", str(bundle), "--keys", str(keys.directory), root=tmp_path)  # asserts no traceback
    out = proc.stdout + proc.stderr
    assert proc.returncode == code, out
    assert re.search(said, out), out
    if code == 2:
        assert proc.stderr.startswith("error: ") and "fix:" in proc.stderr
    assert_nothing_written(tmp_path, {"layout", "l2", "plan-parts", "b.tar"})
