"""The release statement on its own: DSSE round trip with keys init's weights key, the names import
pushes to (made from identity and version alone), and the checks against a registry's tag."""
from __future__ import annotations

import base64
import json

import pytest

from packager.errors import UserError
from packager.supply import statement as S
from packager.supply.keys import MODEL_KEY, MODEL_PUB

DIGEST = "sha256:" + "ab" * 32


def _doc(**over):
    subjects = [(n, DIGEST, "t") for n in (*S.PARTS, *S.BLOBS, "signatures/image-1", "signatures/image-2")]
    args = dict(identity="packager/smollm2-135m-instruct", version="0.1.0-cpu-oci", model={"name": "m"},
                signed_identity="127.0.0.1:5000/packager/smollm2-135m-instruct:0.1.0-cpu-oci",
                chart_archive="smollm2-135m-instruct-0.1.0.tgz", packager_version="0.1.0")
    return S.make(subjects, **{**args, **over})


def test_round_trip_is_an_in_toto_statement_in_dsse(keys):
    envelope = S.sign(_doc(), keys.path(MODEL_KEY), keys.model)
    env = json.loads(envelope)
    assert env["payloadType"] == "application/vnd.in-toto+json" and env["signatures"][0]["keyid"] == keys.model
    payload = json.loads(base64.b64decode(env["payload"]))
    assert payload["_type"] == "https://in-toto.io/Statement/v1"
    assert {s["name"] for s in payload["subject"]} >= {"image", "weights", "chart/archive", "plan/plan.json",
                                                      "signatures/weights", "signatures/image-1"}
    st = S.open_envelope(envelope, keys.path(MODEL_PUB))
    assert (st.identity, st.version, st.digests["plan"]) == ("packager/smollm2-135m-instruct", "0.1.0-cpu-oci", DIGEST)
    assert st.image_signatures == [DIGEST, DIGEST]


def test_a_weights_signature_is_not_a_release(keys):
    """The same key signs model-signing's statements: another predicate type is refused."""
    doc = _doc()
    doc["predicateType"] = "https://model_signing/signature/v1.0"
    with pytest.raises(S.Refused, match="not a packager release"):
        S.open_envelope(S.sign(doc, keys.path(MODEL_KEY), keys.model), keys.path(MODEL_PUB))


def test_every_name_import_pushes_to_comes_from_identity_and_version():
    st = S.parse(_doc())
    assert st.targets("site") == {
        "image": "site/packager/smollm2-135m-instruct:0.1.0-cpu-oci",
        **{p: f"site/packager/smollm2-135m-instruct:0.1.0-cpu-oci-{p}"
           for p in ("weights", "chart", "plan", "sbom", "signatures", "release")}}
    assert st.targets("")["image"] == "packager/smollm2-135m-instruct:0.1.0-cpu-oci"


def test_a_registry_must_serve_the_release_under_its_own_name():
    st = S.parse(_doc())
    assert S.check_served_at(st, "site/packager/smollm2-135m-instruct", "0.1.0-cpu-oci") == "site"
    assert S.check_served_at(st, "packager/smollm2-135m-instruct", "0.1.0-cpu-oci") == ""
    for repo, tag in (("site/packager/smollm2-135m-instruct", "0.2.0-cpu-oci"), ("site/other", "0.1.0-cpu-oci"),
                      ("xpackager/smollm2-135m-instruct", "0.1.0-cpu-oci")):
        with pytest.raises(S.Refused, match="serves release"):
            S.check_served_at(st, repo, tag)


@pytest.mark.parametrize("over, field", [
    ({"identity": "Packager/X"}, "identity"), ({"identity": "a//b"}, "identity"), ({"version": "-x"}, "version"),
    ({"version": "v" * 101}, "version"), ({"chart_archive": "../x.tgz"}, "archive"), ({"chart_archive": "a/b.tgz"}, "archive"),
    ({"chart_archive": "/abs.tgz"}, "archive"), ({"signed_identity": "host/other:0.1.0-cpu-oci"}, "signed_identity"),
])
def test_names_that_become_registry_names_or_files_are_checked(over, field):
    with pytest.raises(UserError, match=field):
        _doc(**over)


def test_expected_version_and_identity():
    st = S.parse(_doc())
    S.check_expected(st, "0.1.0-cpu-oci", "packager/smollm2-135m-instruct")
    with pytest.raises(S.Refused, match="older or other"):
        S.check_expected(st, "0.2.0-cpu-oci", None)
    with pytest.raises(S.Refused, match="not the expected other/model"):
        S.check_expected(st, None, "other/model")
